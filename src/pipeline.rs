//! The one path every edge (SMTP relay, milter, CLI) takes:
//! precheck → choose the sender → directory lookup → rules → render → stamp.

use crate::directory::{normalize_address, Directory, User};
use crate::render::Templates;
pub use crate::rules::Audience;
use crate::rules::{MessageFacts, MessageKind, Rule, RuleSet, Sender};
use crate::stamp::{self, ImagesDropped, Options, Signature, Skip};
use arc_swap::ArcSwap;
use std::fmt;
use std::sync::Arc;
use time::OffsetDateTime;

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
    /// Stamping panicked (a bug): the message goes on as it came, see [`contain`].
    Internal(String),
}

impl Unchanged {
    pub fn label(&self) -> &'static str {
        match self {
            Unchanged::Skip(s) => s.label(),
            Unchanged::UnknownSender(_) => "unknown_sender",
            Unchanged::Render(_) => "render_error",
            Unchanged::NoSignature => "no_signature",
            Unchanged::Internal(_) => "internal_error",
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
            Unchanged::Internal(e) => write!(f, "internal error: {e}"),
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
        /// The signature went in without its inline images, and why.
        images_dropped: Option<ImagesDropped>,
    },
    Unchanged(Unchanged),
}

impl Verdict {
    pub fn label(&self) -> &'static str {
        match self {
            // Its own outcome, so the edges' message counter shows it without extra code.
            Verdict::Stamped {
                images_dropped: Some(_),
                ..
            } => "stamped_without_images",
            Verdict::Stamped { .. } => "stamped",
            Verdict::Unchanged(u) => u.label(),
        }
    }
}

/// One recipient group's share of a message: the relay sends each part as its own
/// next-hop transaction.
#[derive(Debug)]
pub struct Share {
    /// `None`: the message is not split, this part is for every recipient.
    pub audience: Option<Audience>,
    /// Indices into the envelope's `rcpt_to`.
    pub rcpts: Vec<usize>,
    /// The label of the rule that chose this part's template (or no signature); `None`: no
    /// rule decided (none matched, or no rules), the default applied.
    pub rule: Option<String>,
    pub verdict: Verdict,
}

/// What a user's signature would be (the admin page's preview): no message, so exceptions
/// (subject, body, header) do not apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Preview {
    /// The address the user was found by, normalised.
    pub sender: String,
    /// The label of the rule that chose; `None`: no rule matched, the default applies.
    pub rule: Option<String>,
    /// `None`: no signature (a rule said `template = "none"`).
    pub template: Option<String>,
    /// The rendered signature; `None` without a template, or when rendering failed.
    pub signature: Option<Signature>,
    /// The template's bottom part (after the quoted thread), if it has one.
    pub bottom: Option<Signature>,
    /// Why rendering failed, if it did.
    pub error: Option<String>,
}

/// Messages up to this many bytes are stamped on the edge's own task; larger ones on the
/// blocking pool. One value for the relay and the milter (it was 1 MiB and 256 KiB): stamping
/// time grows with the message, and while it runs inline the runtime worker serves no other
/// session, so the lower bound keeps the stall one message can cause small on a 2-core box,
/// while the usual message (tens of KiB) still avoids the hand-off to another thread.
pub const INLINE_LIMIT: usize = 256 * 1024;

/// The pipeline failed inside (a panic, contained): the message itself is not lost, the
/// edge answers as it does for any internal failure (relay: 451, milter: `on_error`).
#[derive(Debug, thiserror::Error)]
#[error("stamping failed internally: {0}")]
pub struct InternalError(pub String);

/// The async entry both edges (relay and milter) run the pipeline through: `work` (the
/// pipeline on one message of `size` bytes, and whatever the edge derives from the verdict)
/// runs inline below [`INLINE_LIMIT`], on the blocking pool above it; a panic is contained
/// either way and becomes an [`InternalError`]. The CPU time `work` took on its thread is
/// added to `cpu` (`sigstamp_stamp_cpu_seconds_total`): beside the wall-clock histogram it
/// tells stamping's own cost from time the thread waited for a core.
pub async fn run<T, F>(size: usize, cpu: &CpuSeconds, work: F) -> Result<T, InternalError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let cpu = cpu.clone();
    let work = move || {
        let started = thread_cpu_seconds();
        let done = work();
        cpu.inc_by((thread_cpu_seconds() - started).max(0.0));
        done
    };
    if size < INLINE_LIMIT {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))
            .map_err(|p| InternalError(panic_text(p.as_ref())))
    } else {
        match tokio::task::spawn_blocking(work).await {
            Ok(done) => Ok(done),
            Err(e) if e.is_panic() => Err(InternalError(panic_text(e.into_panic().as_ref()))),
            Err(e) => Err(InternalError(e.to_string())),
        }
    }
}

/// A counter of CPU seconds: `Metrics::stamp_cpu_seconds`'s type, so each edge passes its own.
pub type CpuSeconds =
    prometheus_client::metrics::counter::Counter<f64, std::sync::atomic::AtomicU64>;

/// The CPU time this thread has used, in seconds.
fn thread_cpu_seconds() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    let msg = p
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| p.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    format!("panic while stamping: {msg}")
}

/// How [`Stamper::decide`] is asked: whose signature, and whether the message may split.
#[derive(Debug, Clone, Copy)]
struct Request<'a> {
    /// The sender to sign for; `None`: chosen from the From header and the envelope.
    sender: Option<&'a str>,
    copies: Copies,
}

/// Whether internal and external recipients may get different copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Copies {
    /// One verdict for everyone (milter, CLI): the external recipients' choice.
    One,
    /// One [`Share`] per recipient group when the rules differ (the relay).
    PerAudience,
}

/// Which template a message gets: the rules, and `[templates] default` when none matches.
/// Swapped whole on reload, so no message sees new rules with an old default.
pub struct Policy {
    pub rules: Arc<RuleSet>,
    pub default: String,
}

/// Shared, cheap to call from many tasks at once. Templates and policy are swapped by a
/// reload; a message in flight keeps what it started with.
pub struct Stamper {
    pub directory: Arc<Directory>,
    pub templates: ArcSwap<Templates>,
    pub options: Options,
    policy: ArcSwap<Policy>,
}

impl Stamper {
    pub fn new(directory: Arc<Directory>, templates: Templates) -> Self {
        Stamper {
            directory,
            templates: ArcSwap::from_pointee(templates),
            options: Options::default(),
            policy: ArcSwap::from_pointee(Policy {
                rules: Arc::new(RuleSet::default()),
                default: "default".into(),
            }),
        }
    }

    /// Use these rules (checked with [`RuleSet::check_templates`] by the caller).
    pub fn with_rules(self, rules: RuleSet) -> Self {
        let default = self.default_template();
        self.set_policy(rules, default);
        self
    }

    /// `[templates] default`: the template of messages no rule matches.
    pub fn with_default(self, default: impl Into<String>) -> Self {
        let rules = self.policy.load().rules.clone();
        self.policy.store(Arc::new(Policy {
            rules,
            default: default.into(),
        }));
        self
    }

    /// Replace rules and default together (reload).
    pub fn set_policy(&self, rules: RuleSet, default: String) {
        self.policy.store(Arc::new(Policy {
            rules: Arc::new(rules),
            default,
        }));
    }

    pub fn rules(&self) -> Arc<RuleSet> {
        self.policy.load().rules.clone()
    }

    pub fn default_template(&self) -> String {
        self.policy.load().default.clone()
    }

    /// Process one message into ONE verdict, for edges that cannot split a transaction
    /// (milter, CLI). A message whose internal and external recipients would get different
    /// signatures gets the external recipients' choice: what leaves the company must carry
    /// the signature meant for outsiders. Never fails: anything that goes wrong leaves the
    /// message unchanged.
    pub fn process(&self, raw: &[u8], env: &Envelope<'_>) -> Verdict {
        self.process_part(raw, env, None).verdict
    }

    /// Like [`Stamper::process`], with the sender given instead of chosen from the From
    /// header and the envelope (`sigstamp stamp --sender`).
    pub fn process_as(&self, raw: &[u8], env: &Envelope<'_>, sender: &str) -> Verdict {
        self.process_part(raw, env, Some(sender)).verdict
    }

    /// [`Stamper::process`] (or [`Stamper::process_as`] with `sender`), with the rule that
    /// decided (`sigstamp stamp` says which).
    pub fn process_part(&self, raw: &[u8], env: &Envelope<'_>, sender: Option<&str>) -> Share {
        let ask = Request {
            sender,
            copies: Copies::One,
        };
        self.decide(raw, env, ask).remove(0)
    }

    /// Process one message per recipient group (the relay). One part, for every recipient,
    /// unless the rules give internal and external recipients different results (another
    /// template, or none versus one) and at least one group's copy is stamped: then an
    /// internal part and an external part, in that order.
    pub fn process_split(&self, raw: &[u8], env: &Envelope<'_>) -> Vec<Share> {
        let ask = Request {
            sender: None,
            copies: Copies::PerAudience,
        };
        self.decide(raw, env, ask)
    }

    /// The signature `address`'s user would get in a new message to `audience`; `None` when
    /// no user has that address.
    pub fn preview(&self, address: &str, audience: Audience) -> Option<Preview> {
        self.preview_for(address, audience, MessageKind::New)
    }

    /// [`Stamper::preview`] for a message of `kind` (a new message, a reply, …).
    pub fn preview_for(
        &self,
        address: &str,
        audience: Audience,
        kind: MessageKind,
    ) -> Option<Preview> {
        let user = self.directory.lookup(address)?;
        let sender = normalize_address(address).into_owned();
        let policy = self.policy.load();
        let rule = policy.rules.choose(
            Sender {
                address: &sender,
                user: &user,
            },
            audience,
            &MessageFacts::none_of_kind(kind),
            OffsetDateTime::now_utc(),
        );
        let template = template_of(&policy, rule).map(str::to_string);
        let templates = self.templates.load();
        let rendered = template.as_deref().map(|t| {
            let sig = templates.render(t, &user)?;
            Ok::<_, crate::render::RenderError>((sig, templates.render_bottom(t, &user)?))
        });
        let (signature, bottom, error) = match rendered {
            None => (None, None, None),
            Some(Ok((sig, bottom))) => (Some(sig), bottom, None),
            Some(Err(e)) => (None, None, Some(e.to_string())),
        };
        Some(Preview {
            sender,
            rule: rule.map(Rule::label),
            template,
            signature,
            bottom,
            error,
        })
    }

    /// The sender the signature is for: the From address if a directory user has it (the
    /// recipient sees that one), else the envelope sender (e.g. a From outside the directory
    /// on a shared mailbox).
    fn sender(
        &self,
        raw: &[u8],
        env: &Envelope<'_>,
        forced: Option<&str>,
    ) -> Result<(String, Arc<User>), Unchanged> {
        if env.mail_from == Some("") {
            return Err(Unchanged::Skip(Skip::NullSender));
        }
        // One reading of the header for the checks and the From address.
        let header_from = stamp::precheck_from(raw, &self.options).map_err(Unchanged::Skip)?;
        let from = forced.map(str::to_string).or(header_from);
        let candidates = match forced {
            Some(_) => [from.as_deref(), None],
            None => [from.as_deref(), env.mail_from],
        };
        let found = candidates.into_iter().flatten().find_map(|a| {
            self.directory
                .lookup(a)
                .map(|u| (a.to_ascii_lowercase(), u))
        });
        match found {
            Some(found) => Ok(found),
            None => Err(Unchanged::UnknownSender(
                from.or_else(|| env.mail_from.map(str::to_string)),
            )),
        }
    }

    /// Every edge's entry: [`Stamper::decide_unguarded`] under [`contain`], so a panic
    /// anywhere in stamping leaves the message unchanged (`internal_error`).
    fn decide(&self, raw: &[u8], env: &Envelope<'_>, ask: Request<'_>) -> Vec<Share> {
        contain(raw, || self.decide_unguarded(raw, env, ask)).unwrap_or_else(|p| {
            vec![Share {
                audience: None,
                rcpts: (0..env.rcpt_to.len()).collect(),
                rule: None,
                verdict: Verdict::Unchanged(Unchanged::Internal(p.reason)),
            }]
        })
    }

    fn decide_unguarded(&self, raw: &[u8], env: &Envelope<'_>, ask: Request<'_>) -> Vec<Share> {
        let whole = |(rule, verdict)| {
            vec![Share {
                audience: None,
                rcpts: (0..env.rcpt_to.len()).collect(),
                rule,
                verdict,
            }]
        };
        let (address, user) = match self.sender(raw, env, ask.sender) {
            Ok(found) => found,
            Err(why) => return whole((None, Verdict::Unchanged(why))),
        };
        let policy = self.policy.load();
        let rules = &policy.rules;
        // Without rules (the common case) nothing below is needed.
        if rules.is_empty() {
            let v = self.stamp_with(raw, &address, &user, Some(policy.default.as_str()));
            return whole((None, v));
        }
        let sender = Sender {
            address: &address,
            user: &user,
        };
        // `once_per_thread` looks for the sender's signature in the quoted thread.
        let templates = self.templates.load();
        let signature_of = |t: &str| templates.render(t, &user).ok();
        let facts = MessageFacts::new(raw).with_signatures(&signature_of);
        let now = OffsetDateTime::now_utc();
        let pick = |audience| {
            let rule = rules.choose(sender, audience, &facts, now);
            (rule.map(Rule::label), template_of(&policy, rule))
        };
        let stamp = |(rule, template): (Option<String>, Option<&str>)| {
            (rule, self.stamp_with(raw, &address, &user, template))
        };
        if !rules.depends_on_audience() {
            return whole(stamp(pick(Audience::External)));
        }
        let (internal, external): (Vec<usize>, Vec<usize>) = (0..env.rcpt_to.len())
            .partition(|&i| rules.audience_of(&env.rcpt_to[i]) == Audience::Internal);
        // One group only. No recipients known (the CLI on a stored message) counts as
        // external.
        if internal.is_empty() || external.is_empty() {
            let audience = if internal.is_empty() {
                Audience::External
            } else {
                Audience::Internal
            };
            return whole(stamp(pick(audience)));
        }
        let (ti, te) = (pick(Audience::Internal), pick(Audience::External));
        if ti.1 == te.1 || ask.copies == Copies::One {
            return whole(stamp(te));
        }
        let ((ri, vi), (re, ve)) = (stamp(ti), stamp(te));
        // Both copies left unchanged (e.g. "none" for one group, a failing template for the
        // other): the bytes are the same, so splitting would only risk duplicates.
        if matches!((&vi, &ve), (Verdict::Unchanged(_), Verdict::Unchanged(_))) {
            return whole((re, ve));
        }
        vec![
            Share {
                audience: Some(Audience::Internal),
                rcpts: internal,
                rule: ri,
                verdict: vi,
            },
            Share {
                audience: Some(Audience::External),
                rcpts: external,
                rule: re,
                verdict: ve,
            },
        ]
    }

    /// Render `template` for the user and stamp; `None` is "no signature".
    fn stamp_with(&self, raw: &[u8], sender: &str, user: &User, template: Option<&str>) -> Verdict {
        let Some(template) = template else {
            return Verdict::Unchanged(Unchanged::NoSignature);
        };
        let templates = self.templates.load();
        let rendered = templates
            .render(template, user)
            .and_then(|sig| Ok((sig, templates.render_bottom(template, user)?)));
        let (sig, bottom) = match rendered {
            Ok(both) => both,
            Err(e) => return Verdict::Unchanged(Unchanged::Render(e.to_string())),
        };
        match stamp::stamp_with_bottom(raw, &sig, bottom.as_ref(), &self.options) {
            Ok(s) => {
                if let Some(why) = s.images_dropped {
                    tracing::warn!(%sender, %template, reason = %why, "signature stamped without its images");
                }
                Verdict::Stamped {
                    message: s.message,
                    sender: sender.to_string(),
                    template: template.to_string(),
                    images_dropped: s.images_dropped,
                }
            }
            Err(skip) => Verdict::Unchanged(Unchanged::Skip(skip)),
        }
    }
}

fn template_of<'a>(policy: &'a Policy, rule: Option<&'a Rule>) -> Option<&'a str> {
    match rule {
        Some(r) => r.template(),
        None => Some(&policy.default),
    }
}

/// A panic caught by [`contain`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Panicked {
    /// The panic's message.
    pub reason: String,
    /// The Message-ID of the message being stamped, if it has one.
    pub message_id: Option<String>,
}

/// Run `work` on the message `raw` so that a panic in it never costs the message: the panic
/// is caught, logged with the message's Message-ID, and returned as [`Panicked`] for the edge
/// to pass the message on unchanged (outcome `internal_error`). The one place every edge's
/// stamping goes through ([`Stamper`]'s entries use it; the milter wraps its own edits in it
/// too). A panic is a bug: nothing it touched is reused (the render cache ignores poisoning
/// and only ever holds whole entries).
pub fn contain<T>(raw: &[u8], work: impl FnOnce() -> T) -> Result<T, Panicked> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).map_err(|payload| {
        let reason = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".to_string());
        // Guarded too: the header scan is the same code that may have panicked.
        let message_id = std::panic::catch_unwind(|| stamp::message_id(raw))
            .ok()
            .flatten();
        tracing::error!(
            message_id = message_id.as_deref().unwrap_or("(none)"),
            panic = %reason,
            "stamping panicked; the message is passed on unchanged"
        );
        Panicked { reason, message_id }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_is_contained_with_the_message_id() {
        let raw = b"Message-ID: <p1@example.com>\r\nSubject: x\r\n\r\nbody\r\n";
        let caught = contain(raw, || -> u8 { panic!("boom {}", 1) }).unwrap_err();
        assert_eq!(caught.reason, "boom 1");
        assert_eq!(caught.message_id.as_deref(), Some("<p1@example.com>"));
        assert_eq!(contain(raw, || 7), Ok(7));
        let caught = contain(b"no header at all", || -> u8 { panic!("static") }).unwrap_err();
        assert_eq!(
            (caught.reason.as_str(), caught.message_id),
            ("static", None)
        );
    }

    #[test]
    fn outcome_labels() {
        let stamped = |images_dropped| Verdict::Stamped {
            message: Vec::new(),
            sender: "a@b.example".into(),
            template: "default".into(),
            images_dropped,
        };
        let table = [
            (stamped(None), "stamped"),
            (
                stamped(Some(ImagesDropped::NoBoundary)),
                "stamped_without_images",
            ),
            (Verdict::Unchanged(Unchanged::NoSignature), "no_signature"),
            (
                Verdict::Unchanged(Unchanged::Internal("x".into())),
                "internal_error",
            ),
            (
                Verdict::Unchanged(Unchanged::UnknownSender(None)),
                "unknown_sender",
            ),
        ];
        for (verdict, label) in table {
            assert_eq!(verdict.label(), label);
        }
    }

    #[tokio::test]
    async fn run_contains_a_panic_inline_and_off_thread() {
        for size in [0, INLINE_LIMIT] {
            let cpu = CpuSeconds::default();
            assert_eq!(run(size, &cpu, || 7).await.unwrap(), 7);
            let e = run(size, &cpu, move || -> u8 { panic!("boom {size}") })
                .await
                .unwrap_err();
            assert!(e.to_string().contains(&format!("boom {size}")), "{e}");
            // The work's CPU time is counted, inline and on the blocking pool alike.
            let before = cpu.get();
            run(size, &cpu, || {
                let t = std::time::Instant::now();
                while t.elapsed() < std::time::Duration::from_millis(5) {}
            })
            .await
            .unwrap();
            assert!(cpu.get() > before, "size {size}: {} CPU seconds", cpu.get());
        }
    }
}
