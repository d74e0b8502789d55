//! Fuzz target `billing_event` (docs/fuzzing.md); the checks are in
//! `admit_fuzz::billing_event_target`.

fn main() {
    afl::fuzz!(|data: &[u8]| admit_fuzz::billing_event_target(data));
}
