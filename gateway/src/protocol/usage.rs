//! The token usage a response reports, normalised across providers: input counts every prompt
//! token the provider processed (cached ones included), output every generated token
//! (reasoning included). Each dialect reads its own usage blocks into a [`Usage`]; when a
//! stream reports usage several times, the last report of each figure wins.

/// Tokens a response reports having used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Prompt tokens processed (including cached ones).
    pub input_tokens: Option<u64>,
    /// Tokens generated (including reasoning).
    pub output_tokens: Option<u64>,
}

impl Usage {
    /// Takes every figure `newer` reports, keeping the ones it does not.
    pub fn update(&mut self, newer: Usage) {
        if newer.input_tokens.is_some() {
            self.input_tokens = newer.input_tokens;
        }
        if newer.output_tokens.is_some() {
            self.output_tokens = newer.output_tokens;
        }
    }
}
