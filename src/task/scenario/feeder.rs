//! Data feeders: records from a CSV or JSON-lines file, one per iteration,
//! their columns the iteration's variables.
//!
//! - `sequential`: the records in order, from the first; at the end, as
//!   `on_exhausted` says (default: start over).
//! - `random`: a uniformly random record each time (never exhausted).
//! - `unique`: each record at most once; at the end, as `on_exhausted`
//!   says (default: stop the run).
//!
//! The file is read where the test is started (beside the scenario file,
//! or relative to it) and travels inside the scenario's source, so a peer
//! never reads it. In a cluster, `sequential` and `unique` feeders draw
//! from ranges the leader leases each peer ([`super::lease`]), so peers
//! walk disjoint slices of one file.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use super::lease::{Leased, LeasedCursor, RecordLeases};

use serde::{Deserialize, Serialize};

/// Largest feeder file read (with the scenario, it rides in a test's
/// definition).
pub const MAX_FEEDER_BYTES: usize = 4 << 20;

/// Longest feeder name (a cluster's leases carry it).
pub const MAX_FEEDER_NAME: usize = 128;

/// How records are handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// In file order.
    #[default]
    Sequential,
    /// At random, with repeats.
    Random,
    /// In file order, each at most once.
    Unique,
}

/// What happens when a `sequential` or `unique` feeder has given every
/// record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnExhausted {
    /// Start over from the first record (not allowed for `unique`).
    Recycle,
    /// Stop the run: it ends "aborted", saying the feeder ran out.
    Stop,
    /// Fail each later iteration with kind `feeder_exhausted`.
    Fail,
}

/// A feeder's records, parsed.
#[derive(Debug)]
pub struct Records {
    /// Column names, in order.
    pub columns: Vec<String>,
    /// The records, each a value per column.
    pub rows: Vec<Vec<String>>,
}

/// Parses `text`: CSV with a header line, or JSON lines (one object per
/// line, scalar values; a missing key is an empty value) when `json_lines`.
pub fn parse(text: &str, json_lines: bool) -> Result<Records, String> {
    let records = if json_lines {
        parse_json_lines(text)?
    } else {
        parse_csv(text)?
    };
    if records.rows.is_empty() {
        return Err("it holds no records".into());
    }
    Ok(records)
}

fn parse_csv(text: &str) -> Result<Records, String> {
    let mut reader = csv::ReaderBuilder::new().from_reader(text.as_bytes());
    let columns: Vec<String> = reader
        .headers()
        .map_err(|e| format!("its header line: {e}"))?
        .iter()
        .map(|c| c.trim().to_owned())
        .collect();
    if let Some(empty) = columns.iter().position(String::is_empty) {
        return Err(format!("column {} of the header has no name", empty + 1));
    }
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| format!("record {}: {e}", i + 1))?;
        rows.push(record.iter().map(str::to_owned).collect());
    }
    Ok(Records { columns, rows })
}

fn parse_json_lines(text: &str) -> Result<Records, String> {
    let mut objects = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("line {}: {e}", i + 1))?;
        let serde_json::Value::Object(object) = value else {
            return Err(format!("line {}: not a JSON object", i + 1));
        };
        objects.push(object);
    }
    let mut columns: Vec<String> = Vec::new();
    for object in &objects {
        for key in object.keys() {
            if !columns.contains(key) {
                columns.push(key.clone());
            }
        }
    }
    let rows = objects
        .iter()
        .map(|object| {
            columns
                .iter()
                .map(|c| match object.get(c) {
                    None | Some(serde_json::Value::Null) => String::new(),
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                })
                .collect()
        })
        .collect();
    Ok(Records { columns, rows })
}

/// Hands out one feeder's records to every instance of a run.
#[derive(Debug)]
pub struct Cursor {
    mode: Mode,
    on_exhausted: OnExhausted,
    rows: usize,
    next: AtomicU64,
    /// Set in a cluster: positions leased from the leader replace `next`.
    leased: OnceLock<Arc<LeasedCursor>>,
}

/// What the feeder gave an iteration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Draw {
    /// This record.
    Record(usize),
    /// None is left: fail this iteration.
    Exhausted,
    /// None is left: stop the run.
    Stop,
    /// The cluster's leader could not lease records: why (this iteration
    /// fails; the next draw asks again).
    Unavailable(String),
}

impl Cursor {
    /// A cursor over `rows` records.
    pub fn new(mode: Mode, on_exhausted: OnExhausted, rows: usize) -> Self {
        Self {
            mode,
            on_exhausted,
            rows,
            next: AtomicU64::new(0),
            leased: OnceLock::new(),
        }
    }

    /// Draws from positions `source` leases from now on (a cluster's
    /// peer), for a `sequential` or `unique` feeder named `name`; a
    /// `random` one stays local. `false` if it leased already.
    pub fn lease_from(&self, source: Arc<dyn RecordLeases>, name: &str) -> bool {
        if self.mode == Mode::Random {
            return true;
        }
        let wrap = self.on_exhausted == OnExhausted::Recycle;
        self.leased
            .set(LeasedCursor::new(source, name, self.rows, wrap))
            .is_ok()
    }

    /// Whether its draws need a cluster's leases to be true: `unique`
    /// and `sequential` ones in a cluster.
    pub fn needs_leases(&self) -> bool {
        self.mode != Mode::Random
    }

    /// The next record for an iteration (`rng` for `random`); in a
    /// cluster, it may wait for a lease.
    pub async fn draw(&self, rng: &mut fastrand::Rng) -> Draw {
        let Some(leased) = self.leased.get().filter(|_| self.mode != Mode::Random) else {
            return self.draw_here(rng);
        };
        match leased.draw().await {
            Leased::Record(row) => Draw::Record(row),
            Leased::Exhausted => self.exhausted(),
            Leased::Unavailable(why) => Draw::Unavailable(why),
        }
    }

    /// The next record from this process's own count.
    pub fn draw_here(&self, rng: &mut fastrand::Rng) -> Draw {
        let rows = self.rows as u64;
        if self.mode == Mode::Random {
            return Draw::Record(rng.usize(..self.rows));
        }
        let taken = self.next.fetch_add(1, Ordering::Relaxed);
        if taken < rows {
            return Draw::Record(taken as usize);
        }
        match self.on_exhausted {
            OnExhausted::Recycle => Draw::Record((taken % rows) as usize),
            _ => self.exhausted(),
        }
    }

    /// What a draw gives once no record is left (never for recycle).
    fn exhausted(&self) -> Draw {
        match self.on_exhausted {
            OnExhausted::Stop => Draw::Stop,
            OnExhausted::Fail | OnExhausted::Recycle => Draw::Exhausted,
        }
    }

    /// How it hands records out.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Records handed out so far (at most the file's).
    pub fn used(&self) -> u64 {
        self.next.load(Ordering::Relaxed).min(self.rows as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_and_json_lines_become_columns_and_rows() {
        let csv = parse("user,password\nann,a1\n\"bob, jr\",b2\n", false).unwrap();
        assert_eq!(csv.columns, ["user", "password"]);
        assert_eq!(csv.rows[1], ["bob, jr", "b2"]);
        let jsonl = parse(
            "{\"user\":\"ann\",\"id\":1}\n\n{\"user\":\"bob\",\"vip\":true}\n",
            true,
        )
        .unwrap();
        assert_eq!(jsonl.columns, ["id", "user", "vip"], "keys in name order");
        assert_eq!(jsonl.rows[1], ["", "bob", "true"]);
        assert!(parse("user\n", false).unwrap_err().contains("no records"));
        assert!(
            parse("a,b\n1,2,3\n", false)
                .unwrap_err()
                .contains("record 1")
        );
        assert!(parse("[1]\n", true).unwrap_err().contains("line 1"));
    }

    #[test]
    fn unique_gives_each_record_once_then_stops_or_fails() {
        let mut rng = fastrand::Rng::with_seed(7);
        let cursor = Cursor::new(Mode::Unique, OnExhausted::Stop, 3);
        let drawn: Vec<Draw> = (0..5).map(|_| cursor.draw_here(&mut rng)).collect();
        assert_eq!(
            drawn,
            [
                Draw::Record(0),
                Draw::Record(1),
                Draw::Record(2),
                Draw::Stop,
                Draw::Stop
            ]
        );
        assert_eq!(cursor.used(), 3);
        let failing = Cursor::new(Mode::Sequential, OnExhausted::Fail, 1);
        assert_eq!(failing.draw_here(&mut rng), Draw::Record(0));
        assert_eq!(failing.draw_here(&mut rng), Draw::Exhausted);
        let recycling = Cursor::new(Mode::Sequential, OnExhausted::Recycle, 2);
        let order: Vec<Draw> = (0..4).map(|_| recycling.draw_here(&mut rng)).collect();
        assert_eq!(
            order,
            [
                Draw::Record(0),
                Draw::Record(1),
                Draw::Record(0),
                Draw::Record(1)
            ]
        );
        let random = Cursor::new(Mode::Random, OnExhausted::Stop, 4);
        assert!((0..100).all(|_| matches!(random.draw_here(&mut rng), Draw::Record(i) if i < 4)));
    }
}
