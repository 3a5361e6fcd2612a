//! MAIL and RCPT command lines for the next hop, rebuilt from what the client sent.
//!
//! smtp-proto decodes the parameters (xtext included); we re-encode exactly the ones of the
//! extensions we advertise (SIZE, BODY, SMTPUTF8, DSN) and refuse the rest with 555, since a
//! client may only use parameters of advertised extensions.

use crate::smtp::replies::{self, SmtpError};
use smtp_proto::{
    MailFrom, RcptTo, MAIL_BODY_7BIT, MAIL_BODY_8BITMIME, MAIL_BODY_BINARYMIME, MAIL_BY_NOTIFY,
    MAIL_BY_RETURN, MAIL_BY_TRACE, MAIL_CONPERM, MAIL_REQUIRETLS, MAIL_RET_FULL, MAIL_RET_HDRS,
    MAIL_SMTPUTF8, RCPT_CONNEG, RCPT_NOTIFY_DELAY, RCPT_NOTIFY_FAILURE, RCPT_NOTIFY_NEVER,
    RCPT_NOTIFY_SUCCESS, RCPT_RRVS_CONTINUE, RCPT_RRVS_REJECT,
};
use std::fmt::Write;

/// `MAIL FROM:<addr> params\r\n` for the next hop.
pub fn mail_line(from: &MailFrom<String>) -> Result<String, SmtpError> {
    let unadvertised = MAIL_BODY_BINARYMIME
        | MAIL_REQUIRETLS
        | MAIL_CONPERM
        | MAIL_BY_NOTIFY
        | MAIL_BY_RETURN
        | MAIL_BY_TRACE;
    let param = if from.flags & unadvertised != 0 || from.by != 0 {
        Some("BODY=BINARYMIME, REQUIRETLS, CONPERM or BY")
    } else if from.hold_for != 0 || from.hold_until != 0 {
        Some("HOLDFOR/HOLDUNTIL")
    } else if from.mtrk.is_some() || from.solicit.is_some() || from.trans_id.is_some() {
        Some("MTRK, SOLICIT or TRANSID")
    } else if from.mt_priority != 0 {
        Some("MT-PRIORITY")
    } else {
        None
    };
    if let Some(p) = param {
        return Err(replies::UNSUPPORTED_PARAMETER.with_detail(p).into());
    }
    let mut line = format!("MAIL FROM:<{}>", from.address);
    if from.size > 0 {
        let _ = write!(line, " SIZE={}", from.size);
    }
    if from.flags & MAIL_BODY_8BITMIME != 0 {
        line.push_str(" BODY=8BITMIME");
    } else if from.flags & MAIL_BODY_7BIT != 0 {
        line.push_str(" BODY=7BIT");
    }
    if from.flags & MAIL_SMTPUTF8 != 0 {
        line.push_str(" SMTPUTF8");
    }
    if from.flags & MAIL_RET_FULL != 0 {
        line.push_str(" RET=FULL");
    } else if from.flags & MAIL_RET_HDRS != 0 {
        line.push_str(" RET=HDRS");
    }
    if let Some(envid) = &from.env_id {
        let _ = write!(line, " ENVID={}", xtext(envid));
    }
    // AUTH= is dropped: we advertise no AUTH, and the next hop trusts us, not the client.
    line.push_str("\r\n");
    Ok(line)
}

/// `RCPT TO:<addr> params\r\n` for the next hop.
pub fn rcpt_line(to: &RcptTo<String>) -> Result<String, SmtpError> {
    if to.flags & (RCPT_CONNEG | RCPT_RRVS_REJECT | RCPT_RRVS_CONTINUE) != 0 || to.rrvs != 0 {
        return Err(replies::UNSUPPORTED_PARAMETER
            .with_detail("CONNEG or RRVS")
            .into());
    }
    let mut line = format!("RCPT TO:<{}>", to.address);
    let notify: Vec<&str> = [
        (RCPT_NOTIFY_NEVER, "NEVER"),
        (RCPT_NOTIFY_SUCCESS, "SUCCESS"),
        (RCPT_NOTIFY_FAILURE, "FAILURE"),
        (RCPT_NOTIFY_DELAY, "DELAY"),
    ]
    .into_iter()
    .filter(|(bit, _)| to.flags & bit != 0)
    .map(|(_, name)| name)
    .collect();
    if !notify.is_empty() {
        let _ = write!(line, " NOTIFY={}", notify.join(","));
    }
    if let Some(orcpt) = &to.orcpt {
        // smtp-proto only accepts the rfc822 address type.
        let _ = write!(line, " ORCPT=rfc822;{}", xtext(orcpt));
    }
    line.push_str("\r\n");
    Ok(line)
}

/// RFC 3461 xtext: `+`, `=`, controls, space and non-ASCII as `+XX`.
pub fn xtext(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        let mut buf = [0u8; 4];
        // smtp-proto decodes `+XX` to the char U+00XX; re-encode those as the same byte.
        let bytes: &[u8] = if (ch as u32) < 0x100 {
            buf[0] = ch as u32 as u8;
            &buf[..1]
        } else {
            ch.encode_utf8(&mut buf).as_bytes()
        };
        for &b in bytes {
            if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
                out.push(b as char);
            } else {
                let _ = write!(out, "+{b:02X}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use smtp_proto::Request;

    fn parse(line: &str) -> Request<String> {
        Request::parse(&mut line.as_bytes().iter())
            .unwrap()
            .into_owned()
    }

    #[test]
    fn mail_parameters_pass_through() {
        let Request::Mail { from } = parse(
            "MAIL FROM:<a@b.example> SIZE=1234 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=QQ+2B1\r\n",
        ) else {
            panic!()
        };
        assert_eq!(
            mail_line(&from).unwrap(),
            "MAIL FROM:<a@b.example> SIZE=1234 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=QQ+2B1\r\n"
        );
    }

    #[test]
    fn null_sender_and_rcpt_dsn() {
        let Request::Mail { from } = parse("MAIL FROM:<>\r\n") else {
            panic!()
        };
        assert_eq!(mail_line(&from).unwrap(), "MAIL FROM:<>\r\n");
        let Request::Rcpt { to } =
            parse("RCPT TO:<c@d.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;c+2Bx@d.example\r\n")
        else {
            panic!()
        };
        assert_eq!(
            rcpt_line(&to).unwrap(),
            "RCPT TO:<c@d.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;c+2Bx@d.example\r\n"
        );
    }

    #[test]
    fn unadvertised_parameters_are_refused() {
        let Request::Mail { from } = parse("MAIL FROM:<a@b.example> REQUIRETLS\r\n") else {
            panic!()
        };
        assert_eq!(mail_line(&from).unwrap_err().reply.code, 555);
    }
}
