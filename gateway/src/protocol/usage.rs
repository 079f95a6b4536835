//! The token usage a response reports, normalised across providers: input counts every prompt
//! token the provider processed (cached ones included), output every generated token
//! (reasoning included). Each dialect reads its own usage blocks into a [`Usage`]; when a
//! stream reports usage several times, the last report of each figure wins.

/// What a response reports: the tokens it used, the model that answered, and why it stopped
/// (read from the bodies and the stream events that carry usage).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    /// Prompt tokens processed (including cached ones).
    pub input_tokens: Option<u64>,
    /// Tokens generated (including reasoning).
    pub output_tokens: Option<u64>,
    /// The model that answered, as the provider names it (`gpt-4.1-2025-04-14`).
    pub model: Option<Box<str>>,
    /// Why generation stopped, as the provider says it (`stop`, `end_turn`, `STOP`,
    /// `tool_calls`), one per distinct reason.
    pub finish_reasons: Vec<Box<str>>,
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
        if newer.model.is_some() {
            self.model = newer.model;
        }
        for reason in newer.finish_reasons {
            if !self.finish_reasons.contains(&reason) {
                self.finish_reasons.push(reason);
            }
        }
    }

    /// Notes the model and the finish reasons a body or event names.
    pub(crate) fn with_response<'a>(
        mut self,
        model: Option<&str>,
        reasons: impl IntoIterator<Item = Option<&'a str>>,
    ) -> Usage {
        self.model = model.filter(|m| !m.is_empty()).map(Box::from);
        for reason in reasons.into_iter().flatten() {
            if !reason.is_empty() && !self.finish_reasons.iter().any(|r| &**r == reason) {
                self.finish_reasons.push(Box::from(reason));
            }
        }
        self
    }
}
