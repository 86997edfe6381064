//! Test-only helpers shared by the `format` modules' tests: hex literals written the way the
//! spec prints them, the proptest case budget, and the mutation sweep over golden vectors.

use bytes::Bytes;

/// Parses hex digits, ignoring whitespace and `|`, with `"..."` meaning literal ASCII.
pub fn hex(s: &str) -> Bytes {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    let mut nibble: Option<u8> = None;
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                assert!(nibble.is_none(), "odd hex digit before a string");
                for c in chars.by_ref() {
                    if c == '"' {
                        break;
                    }
                    out.push(c as u8);
                }
            }
            c if c.is_ascii_hexdigit() => {
                let v = c.to_digit(16).unwrap() as u8;
                match nibble.take() {
                    None => nibble = Some(v),
                    Some(h) => out.push(h << 4 | v),
                }
            }
            c if c.is_whitespace() || c == '|' => {}
            other => panic!("unexpected {other:?} in hex"),
        }
    }
    assert!(nibble.is_none(), "odd number of hex digits");
    Bytes::from(out)
}

/// Proptest config: modest by default, `PROPTEST_CASES` overrides.
pub fn cases() -> proptest::test_runner::Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok());
    proptest::test_runner::Config::with_cases(cases.unwrap_or(256))
}

/// Every single-byte corruption, truncation and extension of `golden` must decode to
/// `Ok` or `Err`, never panic; used by each module's robustness test.
pub fn mutate_all<T>(golden: &[u8], decode: impl Fn(Bytes) -> T) {
    for cut in 0..golden.len() {
        decode(Bytes::copy_from_slice(&golden[..cut]));
    }
    for i in 0..golden.len() {
        for v in [0x00, 0x01, 0x7f, 0x80, 0xff] {
            let mut m = golden.to_vec();
            m[i] = v;
            decode(Bytes::from(m));
        }
    }
}
