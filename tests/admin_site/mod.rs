//! The self-service and overrides tests' site: the templates editor's test site
//! (`templates_support`: HTTPS, the fake Entra ID, the relay) with an overrides file and
//! `[admin.self_service]`, and form helpers. (Used with `mod admin_support; mod fake_graph;
//! mod smtp_support; mod templates_support;`.)
#![allow(dead_code)]

use crate::templates_support::{self, Site};
use std::path::PathBuf;

#[allow(unused_imports)]
pub use crate::templates_support::{signed_in, EDITORS_GROUP, SENDER};

/// Phones look like phones; pronouns are short.
pub const SELF_SERVICE: &str = "[admin.self_service]\n\
     attributes = [\"mobilePhone\", \"pronouns\"]\n\
     [admin.self_service.field.mobilePhone]\n\
     pattern = '\\+?[0-9 ()/-]{6,25}'\n\
     label = \"Mobile phone\"\n\
     hint = \"International format, e.g. +49 151 23456789\"\n\
     [admin.self_service.field.pronouns]\n\
     label = \"Pronouns\"\n\
     max_length = 20\n";

pub struct SelfSite {
    pub site: Site,
    pub overrides: PathBuf,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for SelfSite {
    type Target = Site;
    fn deref(&self) -> &Site {
        &self.site
    }
}

impl std::ops::DerefMut for SelfSite {
    fn deref_mut(&mut self) -> &mut Site {
        &mut self.site
    }
}

/// The site with `[directory] overrides` and [`SELF_SERVICE`]; the config passes the checks
/// `sigstamp serve` makes.
pub async fn site() -> SelfSite {
    let dir = tempfile::tempdir().unwrap();
    let overrides = dir.path().join("overrides.json");
    let extra = format!("[directory]\noverrides = {overrides:?}\n{SELF_SERVICE}");
    let site = templates_support::site_with(&extra).await;
    sigstamp::app::check(&site.app.config).unwrap();
    SelfSite {
        site,
        overrides,
        _dir: dir,
    }
}

impl SelfSite {
    pub async fn get(&self, b: &reqwest::Client, path: &str) -> (u16, String) {
        let r = b.get(format!("{}{path}", self.base)).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// POST a form: the status, and the `Location` of a 303 or else the body.
    pub async fn post(
        &self,
        b: &reqwest::Client,
        path: &str,
        form: &[(&str, &str)],
    ) -> (u16, String) {
        let r = b
            .post(format!("{}{path}", self.base))
            .form(form)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        if status == 303 {
            return (
                status,
                r.headers()["location"].to_str().unwrap().to_string(),
            );
        }
        (status, r.text().await.unwrap())
    }
}
