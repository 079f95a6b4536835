//! Agent ids that mix Latin letters with Cyrillic or Greek ones: `сi-bot`, its first letter
//! the Cyrillic `с`, reads as `ci-bot` in every record, table and console. Such an id is
//! recorded, not refused (an identity provider may name agents in any script, and some name
//! people and their agents in Cyrillic or Greek with Latin product names): the decision record
//! carries the finding `confusable_identifier` (located `principal.id: Latin and Cyrillic
//! letters`), which a SIEM rule on `warden.findings` (ECS) or `unmapped.warden.findings`
//! (OCSF) can single out. Policy does not see it: it is a note for the people reading
//! records, not a refusal.
//! Ids in one script (`ci-bot`, `Алиса`, `通义-agent`) carry no note.

/// The finding a decision record carries when its principal's id mixes scripts.
pub const CONFUSABLE_FINDING: &str = "confusable_identifier";

/// The scripts whose letters imitate one another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Script {
    Latin,
    Cyrillic,
    Greek,
}

impl Script {
    fn of(c: char) -> Option<Script> {
        if !c.is_alphabetic() {
            return None;
        }
        match u32::from(c) {
            0x41..=0x5A
            | 0x61..=0x7A
            | 0xC0..=0x24F
            | 0x1E00..=0x1EFF
            | 0x2C60..=0x2C7F
            | 0xA720..=0xA7FF
            | 0xFF21..=0xFF3A
            | 0xFF41..=0xFF5A => Some(Script::Latin),
            0x400..=0x52F | 0x1C80..=0x1C8F | 0x2DE0..=0x2DFF | 0xA640..=0xA69F => {
                Some(Script::Cyrillic)
            }
            0x370..=0x3FF | 0x1F00..=0x1FFF => Some(Script::Greek),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Script::Latin => "Latin",
            Script::Cyrillic => "Cyrillic",
            Script::Greek => "Greek",
        }
    }
}

/// Where the decision record says `id` mixes scripts (`principal.id: Latin and Cyrillic
/// letters`), when it mixes Latin letters with Cyrillic or Greek ones; `None` otherwise.
pub fn mixed_scripts(id: &str) -> Option<String> {
    let mut seen: Vec<Script> = Vec::with_capacity(3);
    for script in id.chars().filter_map(Script::of) {
        if !seen.contains(&script) {
            seen.push(script);
        }
    }
    if seen.len() < 2 || !seen.contains(&Script::Latin) {
        return None;
    }
    seen.sort_by_key(|s| *s as u8);
    let names: Vec<&str> = seen.iter().map(|s| s.name()).collect();
    Some(format!("principal.id: {} letters", names.join(" and ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_mixing_latin_with_cyrillic_or_greek_letters_is_noted() {
        // `с` (U+0441) Cyrillic, then Latin: reads as `ci-bot`.
        assert_eq!(
            mixed_scripts("\u{441}i-bot").as_deref(),
            Some("principal.id: Latin and Cyrillic letters")
        );
        // Greek omicron in `bοt`.
        assert_eq!(
            mixed_scripts("ci-b\u{3bf}t").as_deref(),
            Some("principal.id: Latin and Greek letters")
        );
        assert_eq!(
            mixed_scripts("\u{441}i-b\u{3bf}t").as_deref(),
            Some("principal.id: Latin and Cyrillic and Greek letters")
        );
        // One script, or scripts that do not imitate Latin: nothing to note.
        for id in [
            "ci-bot",
            "café-bot",
            "\u{410}\u{43b}\u{438}\u{441}\u{430}",
            "\u{3b1}\u{3b2}-7",
            "通义-agent",
            "\u{410}\u{43b}\u{438}\u{441}\u{430}-\u{3b1}",
            "",
        ] {
            assert_eq!(mixed_scripts(id), None, "{id}");
        }
    }
}
