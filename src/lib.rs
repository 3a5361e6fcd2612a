//! sigstamp: stamps company email signatures onto outgoing mail, server-side.
//!
//! The pipeline, in folder order:
//! - [`stamp`]: the pure core. Bytes in, bytes out; no I/O.
//! - [`render`]: handlebars templates → an HTML and a text [`stamp::Signature`].
//! - [`directory`]: the in-memory attribute cache (file, Graph, snapshot, overrides).
//! - [`rules`]: `[[rules]]`, which template a sender's message gets, per recipient group.
//! - [`pipeline`]: sender → directory → rules → render → stamp, shared by every edge.
//! - Edges: [`smtp`] (before-queue relay), [`milter`], [`admin`] (HTTP), [`notify`].
#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod check;
pub mod cli;
pub mod config;
pub mod directory;
pub mod metrics;
pub mod milter;
pub mod notify;
pub mod pipeline;
pub mod reload;
pub mod render;
pub mod rules;
pub mod sent_items;
pub mod smtp;
pub mod stamp;
pub mod status;
pub mod tls;
