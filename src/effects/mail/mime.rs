//! The MIME message of an email: text and HTML alternatives, attachments, headers.

use super::*;
use lettre::Message;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Attachment as MimeAttachment, MultiPart, SinglePart};

/// The MIME message: text and html as multipart/alternative, attachments around it as
/// multipart/mixed.
pub fn build_message(email: &Email, from: &Address, keep_bcc: bool) -> Result<Message, MailError> {
    let mut builder = Message::builder()
        .from(from.0.clone())
        .subject(email.subject.clone())
        .message_id(Some(email.message_id.clone()))
        .user_agent(concat!("hookflow/", env!("CARGO_PKG_VERSION")).to_owned());
    for address in &email.to {
        builder = builder.to(address.0.clone());
    }
    for address in &email.cc {
        builder = builder.cc(address.0.clone());
    }
    for address in &email.bcc {
        builder = builder.bcc(address.0.clone());
    }
    for address in &email.reply_to {
        builder = builder.reply_to(address.0.clone());
    }
    if keep_bcc {
        builder = builder.keep_bcc();
    }
    for (name, value) in &email.headers {
        if let Some(problem) = header_name_problem(name) {
            return Err(MailError::Invalid(problem));
        }
        let name = HeaderName::new_from_ascii(name.clone())
            .map_err(|_| MailError::Invalid(format!("'{name}' is not a header name")))?;
        builder = builder.raw_header(HeaderValue::new(name, value.clone()));
    }
    let body = match (&email.text, &email.html) {
        (Some(text), Some(html)) => Body::Multi(MultiPart::alternative_plain_html(
            text.clone(),
            html.clone(),
        )),
        (None, Some(html)) => Body::Single(SinglePart::html(html.clone())),
        (Some(text), None) => Body::Single(SinglePart::plain(text.clone())),
        (None, None) => Body::Single(SinglePart::plain(String::new())),
    };
    let built = if email.attachments.is_empty() {
        match body {
            Body::Multi(part) => builder.multipart(part),
            Body::Single(part) => builder.singlepart(part),
        }
    } else {
        let mut mixed = match body {
            Body::Multi(part) => MultiPart::mixed().multipart(part),
            Body::Single(part) => MultiPart::mixed().singlepart(part),
        };
        for attachment in &email.attachments {
            let content_type = ContentType::parse(&attachment.content_type).map_err(|_| {
                MailError::Invalid(
                    content_type_problem(&attachment.content_type).unwrap_or_default(),
                )
            })?;
            mixed = mixed.singlepart(
                MimeAttachment::new(attachment.name.clone())
                    .body(attachment.content.clone(), content_type),
            );
        }
        builder.multipart(mixed)
    };
    built.map_err(|e| MailError::Invalid(e.to_string()))
}

enum Body {
    Single(SinglePart),
    Multi(MultiPart),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_drop_bcc_unless_kept_and_nest_alternative_in_mixed() {
        let email = sample();
        let from = Address::parse_list("Shop <shop@example.test>")
            .unwrap()
            .remove(0);
        let message = build_message(&email, &from, false).unwrap();
        let mut recipients: Vec<String> = message
            .envelope()
            .to()
            .iter()
            .map(ToString::to_string)
            .collect();
        recipients.sort();
        assert_eq!(
            recipients,
            ["ada@example.test", "audit@example.test", "cc@example.test"]
        );
        let text = String::from_utf8(message.formatted()).unwrap();
        assert!(!text.contains("Bcc:"), "{text}");
        assert!(
            text.contains("Message-ID: <run-1.confirm@hookflow>"),
            "{text}"
        );
        assert!(text.contains("X-Order: 9999"), "{text}");
        assert!(text.contains("Reply-To: help@example.test"), "{text}");
        let mixed = text.find("multipart/mixed").expect("mixed");
        let alternative = text.find("multipart/alternative").expect("alternative");
        assert!(mixed < alternative, "{text}");
        assert!(text.contains("filename=\"order.json\""), "{text}");

        let kept =
            String::from_utf8(build_message(&email, &from, true).unwrap().formatted()).unwrap();
        assert!(kept.contains("Bcc: audit@example.test"), "{kept}");
    }
}
