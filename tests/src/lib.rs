//! Test support for the warden end-to-end suite: the real `warden` binary against real
//! components — an OpenID Provider (node `oidc-provider`), official Python SDKs, a real OpenClaw
//! agent (npm `openclaw`), and a fake LLM upstream that replays provider response shapes
//! faithfully.

pub mod breaker;
pub mod browser;
pub mod echo;
pub mod egress;
pub mod fake_llm;
pub mod fake_rest;
pub mod haproxy;
pub mod hec;
pub mod helm;
pub mod hostile;
pub mod idp;
pub mod mcp;
pub mod openbao;
pub mod openclaw;
pub mod operator;
pub mod osmem;
pub mod otlp;
pub mod paths;
pub mod postgres;
pub mod process;
pub mod sdk;
pub mod serve;
pub mod sse;
pub mod stack;
pub mod syslog;
pub mod trailing_echo;
pub mod warden;
pub mod webhook;
