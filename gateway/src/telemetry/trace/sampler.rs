//! Which requests are recorded: the agent's decision when its `traceparent` carries one,
//! else a share of new traces chosen by trace id (OpenTelemetry's `ParentBased` over
//! `TraceIdRatioBased`, so every service sampling by the same ratio keeps the same traces).

use opentelemetry::trace::TraceId;

/// Parent-based sampling with a ratio for new traces.
#[derive(Debug, Clone, Copy)]
pub struct Sampler {
    /// `ratio` × 2⁶³: a trace is kept when the top 63 bits of its id's low half are below it.
    bound: u64,
    always: bool,
}

impl Sampler {
    /// Keeps `ratio` (0.0 to 1.0) of new traces.
    pub fn new(ratio: f64) -> Sampler {
        Sampler {
            // The float-to-int cast saturates; `always` covers 1.0 exactly.
            bound: (ratio.clamp(0.0, 1.0) * (1u64 << 63) as f64) as u64,
            always: ratio >= 1.0,
        }
    }

    /// Whether a request of `trace_id` is recorded; `parent` is the agent's sampled flag.
    pub fn sampled(&self, trace_id: TraceId, parent: Option<bool>) -> bool {
        if let Some(parent) = parent {
            return parent;
        }
        if self.always {
            return true;
        }
        let bytes = trace_id.to_bytes();
        let mut low = [0u8; 8];
        low.copy_from_slice(&bytes[8..]);
        (u64::from_be_bytes(low) >> 1) < self.bound
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_agents_flag_whatever_the_ratio() {
        let id = TraceId::from_bytes([7; 16]);
        assert!(Sampler::new(0.0).sampled(id, Some(true)));
        assert!(!Sampler::new(1.0).sampled(id, Some(false)));
    }

    #[test]
    fn keeps_about_the_ratio_of_new_traces() {
        let s = Sampler::new(0.25);
        let kept = (0u64..4000)
            .filter(|i| {
                let mut b = [0u8; 16];
                b[8..].copy_from_slice(&i.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
                s.sampled(TraceId::from_bytes(b), None)
            })
            .count();
        assert!((800..1200).contains(&kept), "{kept}");
        assert!(!Sampler::new(0.0).sampled(TraceId::from_bytes([0xff; 16]), None));
        assert!(Sampler::new(1.0).sampled(TraceId::from_bytes([0xff; 16]), None));
    }
}
