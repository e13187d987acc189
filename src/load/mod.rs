//! Load: what rate to run at, and when each arrival is due.
//!
//! - [`pattern`]: the user-facing shapes (constant, ramp, step, spike, sine,
//!   custom) and their validation.
//! - [`curve`]: the piecewise-linear rate curve every pattern compiles to,
//!   with its exact integral.
//! - [`schedule`]: the arrival times derived from that integral.
//! - [`profile`]: a pattern plus its warmup phase, as one run's load.

pub mod curve;
pub mod pattern;
pub mod profile;
pub mod schedule;

pub use curve::{CurveError, MAX_RATE, RateCurve, RatePoint};
pub use pattern::{LoadPattern, PatternError, Step};
pub use profile::{LoadProfile, Warmup};
pub use schedule::ArrivalSchedule;
