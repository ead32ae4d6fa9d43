//! Addresses and what a message may carry in its headers: mailboxes, reserved header
//! names, content types.

use super::*;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Mailboxes};
use std::fmt;

/// One valid mailbox: `ada@example.com` or `Ada Lovelace <ada@example.com>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address(pub(super) Mailbox);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not an email address (write ada@example.com or Ada Lovelace <ada@example.com>)")]
pub struct AddressError(pub String);

impl Address {
    /// One address, or several separated by commas. A display name containing a comma must be
    /// quoted (`"Smith, Jo" <jo@example.com>`). Blank text is no address.
    pub fn parse_list(text: &str) -> Result<Vec<Address>, AddressError> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(Vec::new());
        }
        let parsed: Mailboxes = text.parse().map_err(|_| AddressError(echo(text)))?;
        Ok(Vec::<Mailbox>::from(parsed)
            .into_iter()
            .map(Address)
            .collect())
    }

    /// The address without its display name (what goes into the SMTP envelope).
    pub fn email(&self) -> &str {
        self.0.email.as_ref()
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Header names the step sets from its own keys, or that MIME building owns.
pub const RESERVED_HEADERS: &[&str] = &[
    "from",
    "sender",
    "to",
    "cc",
    "bcc",
    "reply-to",
    "subject",
    "message-id",
    "date",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "content-disposition",
];

/// Why a custom header name cannot be used, or `None` when it can.
pub fn header_name_problem(name: &str) -> Option<String> {
    let printable = |b: u8| (33..=126).contains(&b) && b != b':';
    if name.is_empty() || name.len() > 76 || !name.bytes().all(printable) {
        return Some(format!(
            "'{}' is not a header name: use letters, digits and '-', at most 76 characters",
            echo(name)
        ));
    }
    if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
        return Some(format!(
            "the header '{name}' is set by the email step itself; use its own key instead"
        ));
    }
    None
}

/// Why a MIME type cannot be used, or `None` when it can.
pub fn content_type_problem(text: &str) -> Option<String> {
    match ContentType::parse(text) {
        Ok(_) => None,
        Err(_) => Some(format!(
            "'{}' is not a MIME type (e.g. text/csv, application/pdf)",
            echo(text)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_lists() {
        let list =
            Address::parse_list("ada@example.test, \"Smith, Jo\" <jo@example.test>").unwrap();
        let shown: Vec<String> = list.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            ["ada@example.test", "\"Smith, Jo\" <jo@example.test>"]
        );
        assert_eq!(list[1].email(), "jo@example.test");
        assert_eq!(Address::parse_list("  ").unwrap(), Vec::new());
        assert_eq!(
            Address::parse_list(" Zoë <zoe@example.test> ").unwrap()[0].to_string(),
            "Zoë <zoe@example.test>"
        );
        for bad in [
            "not an address",
            "ada@",
            "ada@example.test garbage",
            "a@x.test;b@y.test",
        ] {
            let err = Address::parse_list(bad).unwrap_err();
            assert_eq!(err.0, bad);
        }
    }

    #[test]
    fn header_names_and_content_types() {
        assert_eq!(header_name_problem("X-Order-Id"), None);
        assert!(
            header_name_problem("Subject")
                .unwrap()
                .contains("its own key")
        );
        assert!(header_name_problem("bcc").unwrap().contains("its own key"));
        assert!(
            header_name_problem("X Bad")
                .unwrap()
                .contains("not a header name")
        );
        assert!(header_name_problem("X:Bad").is_some());
        assert!(header_name_problem("").is_some());
        assert_eq!(content_type_problem("text/csv; charset=utf-8"), None);
        assert!(content_type_problem("csv").is_some());
    }
}
