//! One compiled rule: its matchers, exceptions, window and action.

use super::conversation::Kinds;
use super::dates::Window;
use super::exceptions::{HeaderTest, Keywords, MessageFacts};
use super::matchers::{domain_of, AttributeMatch, Domains};
use super::Audience;
use crate::directory::User;
use time::OffsetDateTime;

/// Which recipients a rule is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Recipients {
    Internal,
    External,
    #[default]
    Any,
}

impl Recipients {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "internal" => Some(Recipients::Internal),
            "external" => Some(Recipients::External),
            "any" => Some(Recipients::Any),
            _ => None,
        }
    }

    pub fn admits(self, audience: Audience) -> bool {
        matches!(
            (self, audience),
            (Recipients::Any, _)
                | (Recipients::Internal, Audience::Internal)
                | (Recipients::External, Audience::External)
        )
    }
}

/// What a matching rule does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Template(String),
    /// `template = "none"`: leave the message without a signature.
    NoSignature,
}

/// The sender as the pipeline found it: the address the user was found by, and the user.
#[derive(Clone, Copy)]
pub struct Sender<'a> {
    pub address: &'a str,
    pub user: &'a User,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// 1-based position in the file.
    pub(super) position: usize,
    pub(super) name: Option<String>,
    /// Lowercased.
    pub(super) senders: Vec<String>,
    pub(super) domains: Domains,
    pub(super) attributes: Vec<AttributeMatch>,
    /// Group names or ids as written (matched like an attribute on `memberOf`).
    pub(super) groups: Option<AttributeMatch>,
    pub(super) recipients: Recipients,
    /// `message`: which kinds of message (new, reply, forward, auto-reply).
    pub(super) kinds: Kinds,
    pub(super) once_per_thread: bool,
    pub(super) except_subject: Keywords,
    pub(super) except_body: Keywords,
    pub(super) except_header: Vec<HeaderTest>,
    pub(super) window: Window,
    pub(super) action: Action,
}

impl Rule {
    /// The rule's name, or "rule N" (N counts `[[rules]]` tables from 1).
    pub fn label(&self) -> String {
        match &self.name {
            Some(n) => n.clone(),
            None => format!("rule {}", self.position),
        }
    }

    pub fn position(&self) -> usize {
        self.position
    }

    pub fn recipients(&self) -> Recipients {
        self.recipients
    }

    pub fn action(&self) -> &Action {
        &self.action
    }

    /// The template this rule chooses; `None` for no signature.
    pub fn template(&self) -> Option<&str> {
        match &self.action {
            Action::Template(t) => Some(t),
            Action::NoSignature => None,
        }
    }

    /// Does the rule apply? Every matcher given must match (a rule without matchers matches
    /// every sender); within one matcher, any listed value will do. An exception that
    /// applies makes the rule not match, so the next rule is tried.
    pub fn matches(
        &self,
        sender: Sender<'_>,
        audience: Audience,
        facts: &MessageFacts<'_>,
        now: OffsetDateTime,
    ) -> bool {
        self.recipients.admits(audience)
            && self.window.is_active(now)
            && self.matches_sender(sender)
            && (self.kinds.is_any() || self.kinds.admits(facts.kind()))
            && !self.excepted(facts)
            && !self.seen_in_thread(facts)
    }

    /// `once_per_thread`: the quoted thread already holds this template's signature of the
    /// sender. Last: it renders the signature and reads the whole body.
    fn seen_in_thread(&self, facts: &MessageFacts<'_>) -> bool {
        match (self.once_per_thread, self.template()) {
            (true, Some(t)) => facts.has_message() && facts.thread_holds(t),
            _ => false,
        }
    }

    fn matches_sender(&self, s: Sender<'_>) -> bool {
        (self.senders.is_empty()
            || self
                .senders
                .iter()
                .any(|a| a.eq_ignore_ascii_case(s.address.trim())))
            && (self.domains.is_empty()
                || domain_of(s.address).is_some_and(|d| self.domains.contains(d)))
            && self.attributes.iter().all(|a| a.matches(s.user))
            && self.groups.as_ref().is_none_or(|g| g.matches(s.user))
    }

    /// Cheapest first: headers need a header parse, the body a full parse.
    fn excepted(&self, facts: &MessageFacts<'_>) -> bool {
        if !facts.has_message() {
            return false;
        }
        self.except_header.iter().any(|h| h.applies(facts))
            || (!self.except_subject.is_empty() && self.except_subject.found_in(facts.subject()))
            || (!self.except_body.is_empty() && self.except_body.found_in(facts.body()))
    }

    /// Does this rule ever look at the recipients?
    pub fn is_audience_specific(&self) -> bool {
        self.recipients != Recipients::Any
    }

    /// One line for people: "department = Sales · external recipients · until 2026-12-31
    /// → template sales".
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        if !self.senders.is_empty() {
            parts.push(format!("sender {}", self.senders.join(" or ")));
        }
        if !self.domains.is_empty() {
            parts.push(format!(
                "sender domain {}",
                self.domains.entries().join(" or ")
            ));
        }
        for a in &self.attributes {
            parts.push(format!("{} = {}", a.key, a.shown.join(" or ")));
        }
        if let Some(g) = &self.groups {
            parts.push(format!("group {}", g.shown.join(" or ")));
        }
        if parts.is_empty() {
            parts.push("every sender".into());
        }
        match self.recipients {
            Recipients::Internal => parts.push("internal recipients".into()),
            Recipients::External => parts.push("external recipients".into()),
            Recipients::Any => {}
        }
        if !self.kinds.is_any() {
            parts.push(self.kinds.describe());
        }
        if self.once_per_thread {
            parts.push("once per thread".into());
        }
        let list = |k: &Keywords| k.words().join(", ");
        if !self.except_subject.is_empty() {
            parts.push(format!("except subject {}", list(&self.except_subject)));
        }
        if !self.except_body.is_empty() {
            parts.push(format!("except body {}", list(&self.except_body)));
        }
        if !self.except_header.is_empty() {
            let h: Vec<String> = self.except_header.iter().map(|h| h.to_string()).collect();
            parts.push(format!("except header {}", h.join(", ")));
        }
        if let Some(f) = &self.window.from {
            parts.push(format!("from {}", f.shown));
        }
        if let Some(u) = &self.window.until {
            parts.push(format!("until {}", u.shown));
        }
        let action = match &self.action {
            Action::Template(t) => format!("template {t}"),
            Action::NoSignature => "no signature".into(),
        };
        format!("{} → {action}", parts.join(" · "))
    }
}
