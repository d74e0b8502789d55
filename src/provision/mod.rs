//! The inbox processor: claims received events, derives their scope through
//! the core and writes the result in one transaction (DESIGN.md §4).

mod persist;
mod worker;

pub use persist::{Followups, case_id, plan_writes};
pub use worker::{Processor, Step};
