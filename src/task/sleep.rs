//! The `sleep` task: waits a fixed or random time, to model a slow service.

use std::str::FromStr;
use std::time::Duration;

use super::{Context, Task, TaskFactory, TaskResult};
use crate::config::duration::parse_duration;

/// How long each execution of the `sleep` task waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SleepSpec {
    /// Always the same delay.
    Fixed(Duration),
    /// A uniformly random delay in `[min, max]`.
    Uniform(Duration, Duration),
}

impl FromStr for SleepSpec {
    type Err = String;

    /// Parses `10ms` or a range `5ms..20ms`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once("..") {
            None => parse_duration(s).map(Self::Fixed),
            Some((lo, hi)) => {
                let (lo, hi) = (parse_duration(lo)?, parse_duration(hi)?);
                if lo > hi {
                    return Err(format!(
                        "sleep range '{s}' has its minimum above its maximum"
                    ));
                }
                Ok(Self::Uniform(lo, hi))
            }
        }
    }
}

impl SleepSpec {
    /// One delay: the fixed one, or a uniform draw from the range.
    pub fn pick(self, rng: &mut fastrand::Rng) -> Duration {
        match self {
            Self::Fixed(d) => d,
            Self::Uniform(lo, hi) => {
                let span = (hi - lo).as_nanos() as u64;
                lo + Duration::from_nanos(rng.u64(0..=span))
            }
        }
    }

    /// The longest delay it gives.
    pub fn longest(self) -> Duration {
        match self {
            Self::Fixed(d) | Self::Uniform(_, d) => d,
        }
    }
}

/// A task that sleeps per its [`SleepSpec`].
#[derive(Debug, Clone)]
pub struct Sleep {
    spec: SleepSpec,
    rng: fastrand::Rng,
}

impl Task for Sleep {
    async fn execute(&mut self, _ctx: &mut Context<'_>) -> TaskResult {
        tokio::time::sleep(self.spec.pick(&mut self.rng)).await;
        TaskResult::success()
    }
}

/// The factory behind the registered `sleep` task (`--sleep` is required).
pub fn sleep_factory(spec: Option<SleepSpec>) -> anyhow::Result<impl TaskFactory<Task = Sleep>> {
    let spec = spec.ok_or_else(|| anyhow::anyhow!("needs --sleep DURATION or MIN..MAX"))?;
    Ok(move |instance: usize| {
        Ok(Sleep {
            spec,
            rng: fastrand::Rng::with_seed(instance as u64),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fixed_and_range() {
        assert_eq!(
            "10ms".parse(),
            Ok(SleepSpec::Fixed(Duration::from_millis(10)))
        );
        assert_eq!(
            "1ms..3ms".parse(),
            Ok(SleepSpec::Uniform(
                Duration::from_millis(1),
                Duration::from_millis(3)
            ))
        );
        assert!("3ms..1ms".parse::<SleepSpec>().is_err());
        assert!("soon".parse::<SleepSpec>().is_err());
    }
}
