//! Base64 decoded at least as forgivingly as its receivers decode it, for the decodings that
//! read what a body carries: padding present or not (browsers' forgiving-base64, MIME
//! readers), stray bits in the last character ignored (Python's `base64.b64decode`, browsers),
//! a last lone character, which holds no whole byte, dropped. A decoder stricter than a
//! receiver would let one altered character hide a whole payload from the detectors; one more
//! forgiving only reads more.

use base64::Engine;
use base64::alphabet::{STANDARD, URL_SAFE};
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_allow_trailing_bits(true)
    .with_decode_padding_mode(DecodePaddingMode::Indifferent);
const LENIENT_STANDARD: GeneralPurpose = GeneralPurpose::new(&STANDARD, LENIENT);
const LENIENT_URL_SAFE: GeneralPurpose = GeneralPurpose::new(&URL_SAFE, LENIENT);

/// `raw` decoded with the standard alphabet, every byte not of it (line breaks, padding,
/// anything a MIME reader skips) passed over.
pub(super) fn skipping_others(raw: &[u8]) -> Vec<u8> {
    let run: Vec<u8> = raw
        .iter()
        .copied()
        .filter(|&b| of_alphabet(b, false))
        .collect();
    decoded_run(run, &LENIENT_STANDARD)
}

/// `text` decoded when it is base64 in one alphabet, standard or URL-safe (line breaks and
/// padding allowed anywhere); `None` when it holds any other byte, both alphabets' own
/// characters, or nothing.
pub(super) fn whole(text: &[u8]) -> Option<Vec<u8>> {
    let run: Vec<u8> = text
        .iter()
        .copied()
        .filter(|b| !matches!(b, b'\r' | b'\n' | b'='))
        .collect();
    let url_safe = run.iter().any(|b| matches!(b, b'-' | b'_'));
    if run.is_empty() || !run.iter().all(|&b| of_alphabet(b, url_safe)) {
        return None;
    }
    let engine = if url_safe {
        &LENIENT_URL_SAFE
    } else {
        &LENIENT_STANDARD
    };
    Some(decoded_run(run, engine))
}

fn of_alphabet(b: u8, url_safe: bool) -> bool {
    b.is_ascii_alphanumeric()
        || if url_safe {
            matches!(b, b'-' | b'_')
        } else {
            matches!(b, b'+' | b'/')
        }
}

/// A run of alphabet characters only, decoded.
fn decoded_run(mut run: Vec<u8>, engine: &GeneralPurpose) -> Vec<u8> {
    if run.len() % 4 == 1 {
        run.pop();
    }
    // Every byte is of the engine's alphabet and the length is whole, so this cannot fail.
    engine.decode(&run).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_bytes_are_skipped_and_a_lone_last_character_dropped() {
        assert_eq!(skipping_others(b"a2V5\r\nPUFL\nSUE=\r\n"), b"key=AKIA");
        assert_eq!(skipping_others(b"a2V5P"), b"key");
        assert_eq!(skipping_others(b"!!!"), b"");
        assert_eq!(skipping_others(b"a2V5PQ"), b"key=");
    }

    #[test]
    fn stray_bits_in_the_last_character_are_ignored_as_receivers_do() {
        // `PR` carries `=` and four stray bits; strict decoders refuse it, Python does not.
        assert_eq!(skipping_others(b"a2V5PR"), b"key=");
        assert_eq!(whole(b"a2V5PR").as_deref(), Some(&b"key="[..]));
    }

    #[test]
    fn whole_text_is_base64_in_one_alphabet_or_nothing() {
        assert_eq!(
            whole(b"a2V5\r\nPUFL\nSUE=").as_deref(),
            Some(&b"key=AKIA"[..])
        );
        assert_eq!(whole(b"_-8").as_deref(), Some(&[0xff, 0xef][..]));
        assert_eq!(whole(b"/+8").as_deref(), Some(&[0xff, 0xef][..]));
        assert_eq!(whole(b"_+8"), None);
        assert_eq!(whole(b"not base64!"), None);
        assert_eq!(whole(b"=\r\n"), None);
    }
}
