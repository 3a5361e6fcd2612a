//! Signature rules (`[[rules]]`): which template, if any, a sender's message gets, by
//! sender (address, domain, attribute, group), recipients (internal or external),
//! exceptions (subject, body, header) and date window. Rules are tried in file order; the
//! first that matches decides; no match means `[templates] default`.
//!
//! Pure: no I/O. The pipeline finds the sender and asks [`RuleSet::choose`] per audience.

mod compile;

mod dates;
mod eval;
mod exceptions;
mod matchers;
mod rule;

pub use crate::config::{RecipientsConfig, RuleConfig};
/// `group` matches against this attribute, filled by the Graph group sync.
pub use crate::directory::memberships::MEMBER_OF;
pub use compile::NONE;
pub use eval::RuleSet;
pub use exceptions::MessageFacts;
pub use matchers::Domains;
pub use rule::{Action, Recipients, Rule, Sender};

/// Who a copy of a message is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Audience {
    /// Recipients in `[recipients] internal_domains`.
    Internal,
    External,
}

impl Audience {
    pub fn as_str(self) -> &'static str {
        match self {
            Audience::Internal => "internal",
            Audience::External => "external",
        }
    }
}

#[cfg(test)]
mod tests;
