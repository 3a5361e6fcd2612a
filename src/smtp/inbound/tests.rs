//! In-memory session tests.
