//! The LDAP source against a real OpenLDAP slapd on loopback: paged full sync, incremental
//! rounds by modifyTimestamp, deletions caught by the full reconcile, StartTLS and LDAPS with
//! a CA made at test time, and the config checks.

mod ldap_support;
mod smtp_support;

use ldap_support::*;
use sigstamp::config::Config;
use sigstamp::directory::ldap::sync::LdapSyncer;
use sigstamp::directory::ldap::LdapConfig;

fn config(section: &str) -> LdapConfig {
    Config::parse(section)
        .unwrap_or_else(|e| panic!("{e}\n{section}"))
        .ldap
        .expect("[ldap]")
}

#[tokio::test]
async fn full_sync_is_paged_and_maps_attributes() {
    if !have_slapd() {
        return;
    }
    let slapd = Slapd::start(None);
    slapd.add(&users_ldif(0, 12));
    slapd.add(&sales_group(&["user0000"]));
    slapd.modify(&format!(
        "dn: uid=user0001,{PEOPLE}\nchangetype: modify\nadd: displayName\ndisplayName: Ann Example\n-\nadd: departmentNumber\ndepartmentNumber: R&D\n"
    ));
    let mut syncer = LdapSyncer::new(config(&ldap_section(&slapd.url(), "")));
    let report = syncer.sync().await.expect("sync");
    assert!(report.full);
    assert_eq!(report.users, 12, "{report:?}");
    assert_eq!(report.entries, 12);
    // 12 entries 5 a page (the server refuses more than 5 to an unpaged search).
    assert_eq!(report.pages, 3, "{report:?}");

    let users = syncer.users();
    let find = |mail: &str| {
        users
            .iter()
            .find(|u| u.str("mail") == Some(mail))
            .cloned()
            .unwrap_or_else(|| panic!("{mail} synced"))
    };
    let u0 = find("user0000@example.test");
    assert_eq!(u0.str("displayName"), Some("User 0"), "cn stands in");
    assert_eq!(u0.str("surname"), Some("Number0"));
    assert_eq!(u0.str("jobTitle"), Some("Engineer"));
    assert_eq!(u0.str("companyName"), Some("Example Ltd"));
    assert_eq!(
        u0.get("businessPhones").unwrap().to_json(),
        serde_json::json!(["+1 555 0000"])
    );
    let groups = u0.get("memberOf").unwrap().to_json();
    assert!(
        groups.as_array().unwrap().iter().any(|g| g == "Sales"),
        "{groups}"
    );
    assert!(u0.id().is_some_and(|id| id.len() == 36), "entryUUID as id");
    let u1 = find("user0001@example.test");
    assert_eq!(u1.str("displayName"), Some("Ann Example"));
    assert_eq!(u1.str("department"), Some("R&D"));
    assert!(u1.get("memberOf").is_none());
}

#[tokio::test]
async fn unpaged_reads_are_refused_so_paging_is_real() {
    if !have_slapd() {
        return;
    }
    let slapd = Slapd::start(None);
    slapd.add(&users_ldif(0, 12));
    let out = std::process::Command::new("ldapsearch")
        .args(["-x", "-H", &slapd.url(), "-D", BIND_DN, "-w", BIND_PW])
        .args(["-b", PEOPLE, "(mail=*)", "mail"])
        .output()
        .unwrap();
    // 4: sizeLimitExceeded.
    assert_eq!(out.status.code(), Some(4), "{out:?}");
}

#[tokio::test]
async fn incremental_rounds_see_changes_and_the_full_reconcile_deletions() {
    if !have_slapd() {
        return;
    }
    let slapd = Slapd::start(None);
    slapd.add(&users_ldif(0, 6));
    // Two seconds later (stamps have whole seconds): what the next rounds must not re-read.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    slapd.add(&users_ldif(6, 2));
    let cfg = config(
        &ldap_section(&slapd.url(), "")
            .replace("full_sync_interval = \"1h\"", "full_sync_interval = \"3s\""),
    );
    let mut syncer = LdapSyncer::new(cfg);
    let first = syncer.sync().await.unwrap();
    assert!(first.full);
    assert_eq!(first.users, 8);

    slapd.modify(&format!(
        "dn: uid=user0003,{PEOPLE}\nchangetype: modify\nreplace: title\ntitle: Director\n-\ndelete: telephoneNumber\n"
    ));
    slapd.delete(&format!("uid=user0005,{PEOPLE}"));
    slapd.add(&users_ldif(100, 1));
    let next = syncer.sync().await.unwrap();
    assert!(!next.full, "{next:?}");
    // Only entries changed lately come back, not the whole set.
    assert!(next.entries < 8, "{next:?}");
    let users = syncer.users();
    let by_mail = |m: &str| users.iter().find(|u| u.str("mail") == Some(m)).cloned();
    let u3 = by_mail("user0003@example.test").unwrap();
    assert_eq!(u3.str("jobTitle"), Some("Director"));
    assert!(
        u3.get("businessPhones").is_none(),
        "a removed attribute is removed"
    );
    assert!(
        by_mail("user0100@example.test").is_some(),
        "a new user is added"
    );
    // A deletion leaves no trace an incremental search could find: still there.
    assert!(by_mail("user0005@example.test").is_some());
    assert_eq!(next.users, 9);

    // The full reconcile (full_sync_interval) drops it.
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    let full = syncer.sync().await.unwrap();
    assert!(full.full, "{full:?}");
    let users = syncer.users();
    assert!(users
        .iter()
        .all(|u| u.str("mail") != Some("user0005@example.test")));
    assert_eq!(full.users, 8);
    // The unchanged users are the very same allocations as before the reconcile.
    let again = syncer.sync().await.unwrap();
    assert!(!again.full);
}

#[tokio::test]
async fn starttls_and_ldaps_with_a_test_ca() {
    if !have_slapd() {
        return;
    }
    let pki = smtp_support::Pki::new("unused");
    let slapd = Slapd::start(Some(Tls {
        cert: pki.server_cert.clone(),
        key: pki.server_key.clone(),
    }));
    slapd.add(&users_ldif(0, 3));
    let ca = format!("ca_file = \"{}\"\n", pki.ca.display());
    let starttls = config(&ldap_section(
        &slapd.url().replace("127.0.0.1", "localhost"),
        &format!("starttls = true\n{ca}"),
    ));
    let report = LdapSyncer::new(starttls).sync().await.expect("StartTLS");
    assert_eq!(report.users, 3);
    let ldaps = config(&ldap_section(&slapd.ldaps_url(), &ca));
    let report = LdapSyncer::new(ldaps).sync().await.expect("LDAPS");
    assert_eq!(report.users, 3);

    // Without the CA (system roots only) the certificate is refused: an admin must act.
    let untrusted = config(&ldap_section(&slapd.ldaps_url(), ""));
    let e = LdapSyncer::new(untrusted).sync().await.unwrap_err();
    assert!(e.needs_admin(), "{e}");
    assert_eq!(e.code().as_deref(), Some("tlsCertificate"), "{e}");
    // The certificate's IP address works as a name too.
    let by_ip = config(&ldap_section(
        &slapd.ldaps_url().replace("localhost", "127.0.0.1"),
        &ca,
    ));
    assert!(LdapSyncer::new(by_ip).sync().await.is_ok());
}

#[test]
fn config_errors_name_the_key() {
    let graph =
        "[graph]\ntenant_id = \"contoso.example\"\nclient_id = \"x\"\nclient_secret = \"s\"\n";
    let ldap = ldap_section("ldap://127.0.0.1:389", "");
    let cases = [
        (format!("{graph}{ldap}"), "`ldap`"),
        (ldap_section("ldap://dc1.example.com", ""), "ldap.url"),
        (
            ldap_section("ldaps://dc1.example.com", "starttls = true\n"),
            "ldap.starttls",
        ),
        (
            ldap.replace("page_size = 5", "page_size = 0"),
            "ldap.page_size",
        ),
        (
            ldap.replace("bind_password = \"svc-secret\"", ""),
            "ldap.bind_password",
        ),
        (format!("{ldap}filter = \"(&(mail=*)\"\n"), "ldap.filter"),
        (
            format!("{ldap}[ldap.attributes]\nid = \"uid\"\n"),
            "ldap.attributes.id",
        ),
        (
            format!("{ldap}[ldap.attributes]\nextensionAttribute1 = \"bad name\"\n"),
            "ldap.attributes.extensionAttribute1",
        ),
        (
            format!("{ldap}ca_file = \"/nonexistent/ca.pem\"\n"),
            "ldap.ca_file",
        ),
    ];
    for (text, key) in cases {
        let e = Config::parse(&text).expect_err(&text).to_string();
        assert!(e.contains(key), "{key}: {e}");
    }
    let ok = config(&format!(
        "{ldap}flavor = \"active_directory\"\n[ldap.attributes]\nextensionAttribute1 = \"extensionAttribute1\"\n"
    ));
    assert_eq!(ok.attributes.len(), 1);
}
