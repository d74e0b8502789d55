//! Fuzz target `config` (docs/fuzzing.md); the checks are in
//! `admit_fuzz::config`.

fn main() {
    let scratch = admit_fuzz::Scratch::new().expect("a scratch folder under TMPDIR");
    afl::fuzz!(|data: &[u8]| admit_fuzz::config(&scratch, data));
}
