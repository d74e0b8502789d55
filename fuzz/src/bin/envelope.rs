//! Fuzz target `envelope` (docs/fuzzing.md); the checks are in `admit_fuzz::envelope`.

fn main() {
    afl::fuzz!(|data: &[u8]| admit_fuzz::envelope(data));
}
