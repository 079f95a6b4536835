//! What opening a store did to its schema, said in the log: one line per migration step
//! applied (from → to schema version), or one line saying the schema was already current. A
//! step cannot be undone by an older Warden (it refuses a newer schema), so an operator reads
//! here when the point of no return was passed.

/// Schema versions before and after a store was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migrated {
    pub from: usize,
    pub to: usize,
}

impl Migrated {
    /// The log lines: each step applied, or that there was nothing to apply.
    pub fn lines(&self) -> Vec<String> {
        if self.from >= self.to {
            return vec![format!(
                "state schema at version {}, nothing to apply",
                self.to
            )];
        }
        (self.from..self.to)
            .map(|v| format!("state schema migrated from version {v} to {}", v + 1))
            .collect()
    }

    /// Logs [`Migrated::lines`] at INFO, naming the `store` (a file, or `user@host/db`).
    pub fn log(&self, store: &str) {
        for line in self.lines() {
            tracing::info!(store, "{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_applied_step_is_a_line_and_a_current_schema_says_so() {
        assert_eq!(
            Migrated { from: 8, to: 10 }.lines(),
            [
                "state schema migrated from version 8 to 9",
                "state schema migrated from version 9 to 10"
            ]
        );
        assert_eq!(
            Migrated { from: 16, to: 16 }.lines(),
            ["state schema at version 16, nothing to apply"]
        );
        assert_eq!(
            Migrated { from: 0, to: 1 }.lines(),
            ["state schema migrated from version 0 to 1"]
        );
    }
}
