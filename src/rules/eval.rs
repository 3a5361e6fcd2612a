//! The rule set: rules in file order, the first that matches decides.

use super::compile;
use super::exceptions::MessageFacts;
use super::matchers::{is_internal, Domains};
use super::rule::{Rule, Sender};
use super::Audience;
use crate::config::ConfigError;
use crate::config::{RecipientsConfig, RuleConfig};
use time::OffsetDateTime;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleSet {
    rules: Vec<Rule>,
    internal: Domains,
    audience_specific: bool,
}

impl RuleSet {
    /// Check and compile `[[rules]]` and `[recipients]`. Template names are checked
    /// separately ([`RuleSet::check_templates`]): the templates are loaded later.
    pub fn compile(
        rules: &[RuleConfig],
        recipients: &RecipientsConfig,
    ) -> Result<RuleSet, ConfigError> {
        let internal = compile::internal_domains(recipients)?;
        let mut out: Vec<Rule> = Vec::with_capacity(rules.len());
        for (i, c) in rules.iter().enumerate() {
            let rule = compile::rule(i + 1, c, &internal)?;
            if let Some(name) = &rule.name {
                if let Some(other) = out.iter().find(|r| r.name.as_ref() == Some(name)) {
                    return Err(ConfigError::invalid(
                        &format!("rules[{}].name", i + 1),
                        format!("{name:?} is also the name of rules[{}]", other.position),
                    ));
                }
            }
            out.push(rule);
        }
        Ok(RuleSet {
            audience_specific: out.iter().any(Rule::is_audience_specific),
            rules: out,
            internal,
        })
    }

    /// Every template a rule names, and the default, must exist.
    pub fn check_templates(
        &self,
        default: &str,
        has: impl Fn(&str) -> bool,
    ) -> Result<(), ConfigError> {
        if !has(default) {
            return Err(ConfigError::invalid(
                "templates.default",
                format!("no template named {default:?}"),
            ));
        }
        for r in &self.rules {
            if let Some(t) = r.template() {
                if !has(t) {
                    return Err(ConfigError::invalid(
                        &format!("rules[{}].template", r.position),
                        format!("no template named {t:?}"),
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn internal_domains(&self) -> &Domains {
        &self.internal
    }

    /// Can the choice differ between internal and external recipients? When not, the
    /// recipients need not even be classified.
    pub fn depends_on_audience(&self) -> bool {
        self.audience_specific
    }

    pub fn audience_of(&self, recipient: &str) -> Audience {
        if is_internal(&self.internal, recipient) {
            Audience::Internal
        } else {
            Audience::External
        }
    }

    /// The first rule that matches; `None`: no rule did, the default template applies.
    pub fn choose(
        &self,
        sender: Sender<'_>,
        audience: Audience,
        facts: &MessageFacts<'_>,
        now: OffsetDateTime,
    ) -> Option<&Rule> {
        self.rules
            .iter()
            .find(|r| r.matches(sender, audience, facts, now))
    }
}
