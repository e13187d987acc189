//! A run's whole load: an optional warmup phase followed by the main pattern.

use std::time::Duration;

use super::curve::RateCurve;
use super::pattern::{LoadPattern, PatternError};

/// A phase run before the main pattern whose results are reported apart and
/// kept out of the main statistics and thresholds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Warmup {
    /// How long the warmup lasts.
    pub duration: Duration,
    /// Its constant rate; `None` means the main pattern's starting rate (or
    /// its peak, when the pattern starts at 0).
    pub rate: Option<f64>,
}

/// The target rate of a paced run: warmup (optional) then the main pattern.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadProfile {
    /// Optional warmup prefix.
    pub warmup: Option<Warmup>,
    /// The measured part of the run.
    pub pattern: LoadPattern,
}

/// A profile compiled to one curve, with the instant the main phase begins.
#[derive(Debug, Clone, PartialEq)]
pub struct CompiledProfile {
    /// Target rate over the whole run, warmup included.
    pub curve: RateCurve,
    /// Seconds from the run's start to the start of the main phase.
    pub warmup_secs: f64,
}

impl LoadProfile {
    /// Compiles the profile, validating every part.
    pub fn compile(&self) -> Result<CompiledProfile, PatternError> {
        let main = self.pattern.to_curve()?;
        let Some(warmup) = self.warmup.filter(|w| !w.duration.is_zero()) else {
            return Ok(CompiledProfile {
                curve: main,
                warmup_secs: 0.0,
            });
        };
        let rate = warmup.rate.unwrap_or_else(|| {
            let start = main.rate_at(0.0);
            if start > 0.0 { start } else { main.peak_rate() }
        });
        let warm = LoadPattern::Constant {
            rate,
            duration: warmup.duration,
        }
        .to_curve()
        .map_err(|e| PatternError {
            pattern: "warmup",
            problem: e.problem,
        })?;
        let curve = warm.then(&main).map_err(|e| PatternError {
            pattern: "warmup",
            problem: e.to_string(),
        })?;
        Ok(CompiledProfile {
            curve,
            warmup_secs: warmup.duration.as_secs_f64(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_precedes_the_main_pattern_at_its_starting_rate() {
        let profile = LoadProfile {
            warmup: Some(Warmup {
                duration: Duration::from_secs(2),
                rate: None,
            }),
            pattern: LoadPattern::Constant {
                rate: 40.0,
                duration: Duration::from_secs(5),
            },
        };
        let compiled = profile.compile().unwrap();
        assert_eq!(compiled.warmup_secs, 2.0);
        assert!((compiled.curve.total() - 280.0).abs() < 1e-9);
        assert!((compiled.curve.duration() - 7.0).abs() < 1e-12);
    }
}
