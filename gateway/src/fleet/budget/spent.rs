//! What an account spent (or what calls in flight reserved on it), and whose account it is.

use std::sync::Arc;

use super::config::{Period, Scope};

/// What was spent in one period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Spent {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Millionths of a US dollar.
    pub micro_usd: u64,
}

impl Spent {
    /// Input and output tokens.
    pub fn tokens(self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }

    pub(super) fn add(&mut self, other: Spent) {
        self.input_tokens = self.input_tokens.saturating_add(other.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(other.output_tokens);
        self.micro_usd = self.micro_usd.saturating_add(other.micro_usd);
    }

    pub(super) fn sub(&mut self, other: Spent) {
        self.input_tokens = self.input_tokens.saturating_sub(other.input_tokens);
        self.output_tokens = self.output_tokens.saturating_sub(other.output_tokens);
        self.micro_usd = self.micro_usd.saturating_sub(other.micro_usd);
    }

    pub(super) fn is_zero(self) -> bool {
        self == Spent::default()
    }
}

/// Whose spend, over which period, and which one (days or months since 1970).
pub(super) type Account = (Scope, Arc<str>, Period, u32);
