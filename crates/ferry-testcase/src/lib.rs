//! Runbook test cases (`ferry test`, spec §8): the case file format ([`case`]), the matchers
//! ([`expect`], spec §8.2), a line diff for failure reports ([`diff`]) and the JUnit XML
//! writer ([`junit`]). Pure: no engine, no I/O beyond reading a case file. The runner that
//! executes a case with the engine is `ferry test` in the binary crate.

pub mod case;
pub mod diff;
pub mod expect;
pub mod junit;

pub use case::{Event, Iteration, JobExpect, Mock, StepCase, TestCase};
pub use expect::{Expect, Failure};
