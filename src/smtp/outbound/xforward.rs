//! XFORWARD towards the next hop, when it offers it. lettre keeps only the EHLO keywords it
//! knows, so the offer is read from a second EHLO of our own, once per connection, the first
//! time attributes are to be sent.

use super::{Delivery, HopError, SmtpDelivery};
use crate::smtp::xforward::{self, Attrs};

impl SmtpDelivery {
    /// [`Delivery::xforward`]: send the attributes the next hop accepts, before MAIL (the
    /// open transaction, if any, ended first: XFORWARD is refused inside one).
    pub(super) async fn send_xforward(&mut self, attrs: &Attrs) -> Result<(), HopError> {
        self.abort().await?;
        if self.xforward_offer.is_none() {
            let ehlo = self
                .command(format!("EHLO {}\r\n", self.helo), self.timeout)
                .await?;
            let offer = if ehlo.is_positive() {
                xforward::offered(&ehlo.lines)
            } else {
                None
            };
            self.xforward_offer = Some(offer.unwrap_or_default());
        }
        let offer = self.xforward_offer.as_deref().unwrap_or_default();
        for line in xforward::command_lines(attrs, offer) {
            let reply = self.command(line, self.timeout).await?;
            if !reply.is_positive() {
                tracing::warn!(reply = %reply.lines.join(" "), code = reply.code, "next hop refused XFORWARD");
            }
        }
        Ok(())
    }
}
