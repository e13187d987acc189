//! Writes each fuzz target's seed corpus: the valid inputs of
//! `vajra::fuzzing::samples`, one file each, under `corpus/<target>/`
//! (cargo-fuzz's default corpus directory), so coverage-guided fuzzing
//! starts from messages its peers really send rather than from nothing.

use std::path::Path;

fn main() -> std::io::Result<()> {
    for (name, _) in vajra::fuzzing::DECODERS {
        let target = name.replace('-', "_");
        let dir = Path::new("corpus").join(&target);
        std::fs::create_dir_all(&dir)?;
        let samples = vajra::fuzzing::samples(name);
        for (i, sample) in samples.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i}")), sample)?;
        }
        println!("{target}: {} seeds in {}", samples.len(), dir.display());
    }
    Ok(())
}
