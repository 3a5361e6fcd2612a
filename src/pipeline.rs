//! The one path every edge (SMTP relay, milter, CLI) takes:
//! precheck → choose the sender → directory lookup → render → stamp.

use crate::directory::Directory;
use crate::render::Templates;
use crate::stamp::{self, Options, Skip};
use arc_swap::ArcSwap;
use std::fmt;
use std::sync::Arc;

/// The SMTP envelope as the edge saw it.
#[derive(Debug, Clone, Default)]
pub struct Envelope<'a> {
    /// MAIL FROM address; `Some("")` is the null reverse-path `<>`; `None` when unknown
    /// (the CLI on a stored message).
    pub mail_from: Option<&'a str>,
    pub rcpt_to: &'a [String],
}

/// Why the pipeline left a message unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unchanged {
    /// The core refused (signed, report, already stamped, …).
    Skip(Skip),
    /// Neither the From address nor the envelope sender is in the directory.
    UnknownSender(Option<String>),
    /// The template failed to render for this user.
    Render(String),
    /// A rule chose no signature.
    NoSignature,
}

impl Unchanged {
    pub fn label(&self) -> &'static str {
        match self {
            Unchanged::Skip(s) => s.label(),
            Unchanged::UnknownSender(_) => "unknown_sender",
            Unchanged::Render(_) => "render_error",
            Unchanged::NoSignature => "no_signature",
        }
    }
}

impl fmt::Display for Unchanged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unchanged::Skip(s) => s.fmt(f),
            Unchanged::UnknownSender(Some(a)) => write!(f, "sender {a} is not in the directory"),
            Unchanged::UnknownSender(None) => f.write_str("no sender address found"),
            Unchanged::Render(e) => write!(f, "template failed: {e}"),
            Unchanged::NoSignature => f.write_str("no signature for this sender"),
        }
    }
}

/// The result of processing one message.
#[derive(Debug)]
pub enum Verdict {
    Stamped {
        message: Vec<u8>,
        sender: String,
        template: String,
    },
    Unchanged(Unchanged),
}

impl Verdict {
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Stamped { .. } => "stamped",
            Verdict::Unchanged(u) => u.label(),
        }
    }
}

/// Shared, cheap to call from many tasks at once.
pub struct Stamper {
    pub directory: Arc<Directory>,
    pub templates: ArcSwap<Templates>,
    pub template: String,
    pub options: Options,
}

impl Stamper {
    pub fn new(directory: Arc<Directory>, templates: Templates) -> Self {
        Stamper {
            directory,
            templates: ArcSwap::from_pointee(templates),
            template: "default".into(),
            options: Options::default(),
        }
    }

    /// Process one message. Never fails: anything that goes wrong leaves it unchanged.
    pub fn process(&self, raw: &[u8], env: &Envelope<'_>) -> Verdict {
        self.process_inner(raw, env, None)
    }

    /// Like [`Stamper::process`], with the sender given instead of chosen from the From
    /// header and the envelope (`sigstamp stamp --sender`).
    pub fn process_as(&self, raw: &[u8], env: &Envelope<'_>, sender: &str) -> Verdict {
        self.process_inner(raw, env, Some(sender))
    }

    fn process_inner(&self, raw: &[u8], env: &Envelope<'_>, forced: Option<&str>) -> Verdict {
        if env.mail_from == Some("") {
            return Verdict::Unchanged(Unchanged::Skip(Skip::NullSender));
        }
        if let Err(skip) = stamp::precheck(raw) {
            return Verdict::Unchanged(Unchanged::Skip(skip));
        }
        // The signature should match the sender the recipient sees (From); the envelope
        // sender is the fallback (e.g. a From outside the directory on a shared mailbox).
        let from = forced
            .map(str::to_string)
            .or_else(|| stamp::from_address(raw));
        let candidates = match forced {
            Some(_) => [from.as_deref(), None],
            None => [from.as_deref(), env.mail_from],
        };
        let Some((sender, user)) = candidates.into_iter().flatten().find_map(|a| {
            self.directory
                .lookup(a)
                .map(|u| (a.to_ascii_lowercase(), u))
        }) else {
            let shown = from.or_else(|| env.mail_from.map(str::to_string));
            return Verdict::Unchanged(Unchanged::UnknownSender(shown));
        };
        let templates = self.templates.load();
        let sig = match templates.render(&self.template, &user) {
            Ok(sig) => sig,
            Err(e) => return Verdict::Unchanged(Unchanged::Render(e.to_string())),
        };
        match stamp::stamp(raw, &sig, &self.options) {
            Ok(s) => Verdict::Stamped {
                message: s.message,
                sender,
                template: self.template.clone(),
            },
            Err(skip) => Verdict::Unchanged(Unchanged::Skip(skip)),
        }
    }
}
