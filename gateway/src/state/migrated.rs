//! What opening a store did to its schema, said in the log: one INFO line per start, from which
//! schema version to which (or that the schema was already current), and each step applied at
//! DEBUG. A step cannot be undone by an older Warden (it refuses a newer schema), so an
//! operator reads here when the point of no return was passed. `warden state migrate` prints
//! each step ([`Migrated::lines`]).

/// Schema versions before and after a store was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migrated {
    pub from: usize,
    pub to: usize,
}

impl Migrated {
    /// Each step applied, one line each, or that there was nothing to apply.
    pub fn lines(&self) -> Vec<String> {
        if self.from >= self.to {
            return vec![self.summary()];
        }
        (self.from..self.to).map(step).collect()
    }

    /// The whole of it in one line: from which version to which, or that there was nothing to
    /// apply.
    pub fn summary(&self) -> String {
        if self.from >= self.to {
            return format!("state schema at version {}, nothing to apply", self.to);
        }
        let steps = self.to - self.from;
        format!(
            "state schema migrated from version {} to {} ({steps} step{})",
            self.from,
            self.to,
            if steps == 1 { "" } else { "s" }
        )
    }

    /// Logs [`Migrated::summary`] at INFO, naming the `store` (a file, or `user@host/db`).
    pub fn log(&self, store: &str) {
        tracing::info!(store, "{}", self.summary());
    }

    /// Logs each step applied at DEBUG, naming the `store`.
    pub fn log_steps(&self, store: &str) {
        for version in self.from..self.to {
            tracing::debug!(store, "{}", step(version));
        }
    }
}

/// The line of the step from `version` to the next.
fn step(version: usize) -> String {
    format!(
        "state schema migrated from version {version} to {}",
        version + 1
    )
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

    #[test]
    fn the_summary_says_from_which_version_to_which_in_one_line() {
        assert_eq!(
            Migrated { from: 0, to: 22 }.summary(),
            "state schema migrated from version 0 to 22 (22 steps)"
        );
        assert_eq!(
            Migrated { from: 21, to: 22 }.summary(),
            "state schema migrated from version 21 to 22 (1 step)"
        );
        assert_eq!(
            Migrated { from: 22, to: 22 }.summary(),
            "state schema at version 22, nothing to apply"
        );
    }
}
