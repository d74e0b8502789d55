//! Fuzz target `signature` (docs/fuzzing.md); the checks are in `admit_fuzz::signature`.

fn main() {
    afl::fuzz!(|data: &[u8]| admit_fuzz::signature(data));
}
