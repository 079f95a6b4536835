//! Interpret and observe: what an LLM request means, and what its response reports.
