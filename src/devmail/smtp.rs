//! The mailbox's SMTP side: a small receiver on tokio that takes what
//! `activator serve` (or any client) sends with `SMTP_URL=smtp://...` and
//! puts it in the same inbox as the HTTP side.
//!
//! It speaks what a client needs to deliver (RFC 5321): EHLO/HELO, MAIL,
//! RCPT, DATA (dot-unstuffed), RSET, NOOP, QUIT; it advertises 8BITMIME and
//! SMTPUTF8 and takes any sender and recipient. No TLS and no AUTH: it is
//! for loopback. Lines, messages, recipients, connections and idle time are
//! bounded, so a misbehaving client cannot exhaust it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mail_parser::{MessageParser, PartType};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::{Inbox, Incoming};

/// The longest command line (RFC 5321 says 512) and text line (1000)
/// taken, line ending included; longer ones are refused.
const MAX_COMMAND_LINE: usize = 2048;
const MAX_TEXT_LINE: usize = 8192;
/// The largest message taken.
pub const MAX_MESSAGE: usize = 1024 * 1024;
/// Recipients of one message at most.
const MAX_RECIPIENTS: usize = 100;
/// Connections served at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 64;
/// How long a client may stay silent.
const IDLE: Duration = Duration::from_secs(300);
/// The name it greets with.
const NAME: &str = "activator-mailbox";

/// Accepts connections on `listener` for ever, each served on its own task.
pub async fn serve(listener: TcpListener, mailbox: Arc<Inbox>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, peer)) => {
                let mailbox = mailbox.clone();
                tokio::spawn(async move {
                    if let Err(err) = session(stream, peer, &mailbox).await {
                        tracing::debug!(%peer, error = %err, "SMTP session ended");
                    }
                    drop(permit);
                });
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot accept an SMTP connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One line read by [`read_line`].
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// A whole line, without its line ending.
    Whole(Vec<u8>),
    /// A line longer than allowed: its start was kept, the rest dropped.
    TooLong,
}

/// Reads a line ending in LF (CRLF or bare LF), keeping at most `max`
/// bytes of it; `None` when the client closed (or left a line unfinished).
async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> std::io::Result<Option<Line>> {
    let mut line = Vec::new();
    let mut too_long = false;
    loop {
        let buffer = reader.fill_buf().await?;
        if buffer.is_empty() {
            return Ok(None);
        }
        let (chunk, done) = match buffer.iter().position(|&b| b == b'\n') {
            Some(end) => (&buffer[..=end], true),
            None => (buffer, false),
        };
        let room = max.saturating_sub(line.len());
        if chunk.len() > room {
            too_long = true;
        } else {
            line.extend_from_slice(chunk);
        }
        let used = chunk.len();
        reader.consume(used);
        if done {
            if too_long {
                return Ok(Some(Line::TooLong));
            }
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(Some(Line::Whole(line)));
        }
    }
}

/// The envelope of the message being sent.
#[derive(Default)]
struct Envelope {
    from: Option<String>,
    to: Vec<String>,
}

async fn reply<W: AsyncWrite + Unpin>(writer: &mut W, text: &str) -> std::io::Result<()> {
    writer.write_all(text.as_bytes()).await?;
    writer.write_all(b"\r\n").await?;
    writer.flush().await
}

/// The address in `FROM:<a@b> PARAMS` or `TO:<a@b>`, after `prefix`
/// (case-insensitive); `None` when the syntax is wrong.
fn path<'a>(argument: &'a str, prefix: &str) -> Option<(&'a str, &'a str)> {
    let head = argument.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let rest = argument[prefix.len()..].trim_start();
    let rest = rest.strip_prefix('<')?;
    let (address, parameters) = rest.split_once('>')?;
    Some((address.trim(), parameters.trim()))
}

async fn session(stream: TcpStream, peer: SocketAddr, mailbox: &Inbox) -> std::io::Result<()> {
    let (read, mut writer) = stream.into_split();
    let mut reader = BufReader::new(read);
    reply(&mut writer, &format!("220 {NAME} ESMTP ready")).await?;
    let mut greeted = false;
    let mut envelope = Envelope::default();
    loop {
        let line = match tokio::time::timeout(IDLE, read_line(&mut reader, MAX_COMMAND_LINE)).await
        {
            Ok(line) => line?,
            Err(_) => {
                reply(&mut writer, "421 4.4.2 Idle for too long, closing").await?;
                return Ok(());
            }
        };
        let line = match line {
            None => return Ok(()),
            Some(Line::TooLong) => {
                reply(&mut writer, "500 5.5.2 Line too long").await?;
                continue;
            }
            Some(Line::Whole(line)) => String::from_utf8_lossy(&line).into_owned(),
        };
        let (verb, argument) = line.split_once(' ').unwrap_or((&line, ""));
        let argument = argument.trim();
        match verb.to_ascii_uppercase().as_str() {
            "EHLO" => {
                greeted = true;
                envelope = Envelope::default();
                let text = format!(
                    "250-{NAME} greets {}\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-SIZE {MAX_MESSAGE}\r\n250 HELP",
                    if argument.is_empty() { "you" } else { argument }
                );
                reply(&mut writer, &text).await?;
            }
            "HELO" => {
                greeted = true;
                envelope = Envelope::default();
                reply(&mut writer, &format!("250 {NAME}")).await?;
            }
            "MAIL" if !greeted => reply(&mut writer, "503 5.5.1 Send EHLO or HELO first").await?,
            "MAIL" if envelope.from.is_some() => {
                reply(&mut writer, "503 5.5.1 Sender already given").await?
            }
            "MAIL" => match path(argument, "FROM:") {
                Some((_, parameters)) if too_big(parameters) => {
                    reply(&mut writer, "552 5.3.4 Message too big").await?
                }
                Some((address, _)) => {
                    envelope.from = Some(address.to_owned());
                    reply(&mut writer, "250 2.1.0 OK").await?;
                }
                None => reply(&mut writer, "501 5.5.4 Syntax: MAIL FROM:<address>").await?,
            },
            "RCPT" if envelope.from.is_none() => {
                reply(&mut writer, "503 5.5.1 Send MAIL first").await?
            }
            "RCPT" if envelope.to.len() >= MAX_RECIPIENTS => {
                reply(&mut writer, "452 4.5.3 Too many recipients").await?
            }
            "RCPT" => match path(argument, "TO:") {
                Some((address, _)) if !address.is_empty() => {
                    envelope.to.push(address.to_owned());
                    reply(&mut writer, "250 2.1.5 OK").await?;
                }
                _ => reply(&mut writer, "501 5.5.4 Syntax: RCPT TO:<address>").await?,
            },
            "DATA" if envelope.to.is_empty() => {
                reply(&mut writer, "503 5.5.1 Send RCPT first").await?
            }
            "DATA" => {
                reply(&mut writer, "354 End data with <CR><LF>.<CR><LF>").await?;
                let Some(data) = read_data(&mut reader).await? else {
                    return Ok(());
                };
                let envelope = std::mem::take(&mut envelope);
                match data {
                    Data::TooBig => reply(&mut writer, "552 5.3.4 Message too big").await?,
                    Data::LineTooLong => {
                        reply(&mut writer, "500 5.5.2 Line too long in the message").await?
                    }
                    Data::Message(raw) => {
                        let ids = deliver(mailbox, &envelope, &raw);
                        tracing::info!(%peer, recipients = ids.len(), "mailbox received a message over SMTP");
                        let ids: Vec<String> = ids.iter().map(u64::to_string).collect();
                        reply(
                            &mut writer,
                            &format!("250 2.0.0 OK: queued as {}", ids.join(",")),
                        )
                        .await?;
                    }
                }
            }
            "RSET" => {
                envelope = Envelope::default();
                reply(&mut writer, "250 2.0.0 OK").await?;
            }
            "NOOP" => reply(&mut writer, "250 2.0.0 OK").await?,
            "VRFY" => reply(&mut writer, "252 2.5.0 Cannot verify, will accept").await?,
            "QUIT" => {
                reply(&mut writer, "221 2.0.0 Bye").await?;
                return Ok(());
            }
            _ => reply(&mut writer, "502 5.5.1 Command not implemented").await?,
        }
    }
}

/// Whether MAIL's `SIZE=` parameter announces more than we take.
fn too_big(parameters: &str) -> bool {
    parameters.split_whitespace().any(|parameter| {
        parameter
            .split_once('=')
            .filter(|(name, _)| name.eq_ignore_ascii_case("SIZE"))
            .and_then(|(_, size)| size.parse::<usize>().ok())
            .is_some_and(|size| size > MAX_MESSAGE)
    })
}

/// What DATA brought.
enum Data {
    Message(Vec<u8>),
    TooBig,
    LineTooLong,
}

/// Reads the message up to the line holding a single dot, undoing the
/// dot-stuffing; `None` when the client left. An oversized message or line
/// is read to its end (so the session stays in step) but not kept.
async fn read_data<R: AsyncBufRead + Unpin>(reader: &mut R) -> std::io::Result<Option<Data>> {
    let mut message = Vec::new();
    let mut refused = None;
    loop {
        let line = match tokio::time::timeout(IDLE, read_line(reader, MAX_TEXT_LINE)).await {
            Ok(line) => line?,
            Err(_) => return Ok(None),
        };
        let line = match line {
            None => return Ok(None),
            Some(Line::TooLong) => {
                refused.get_or_insert(Data::LineTooLong);
                continue;
            }
            Some(Line::Whole(line)) => line,
        };
        if line == b"." {
            return Ok(Some(refused.unwrap_or(Data::Message(message))));
        }
        let line = line.strip_prefix(b".").unwrap_or(&line);
        if refused.is_none() {
            if message.len() + line.len() + 2 > MAX_MESSAGE {
                refused = Some(Data::TooBig);
                message = Vec::new();
            } else {
                message.extend_from_slice(line);
                message.extend_from_slice(b"\r\n");
            }
        }
    }
}

/// Puts one copy of `raw` in the inbox per recipient; returns their ids.
fn deliver(mailbox: &Inbox, envelope: &Envelope, raw: &[u8]) -> Vec<u64> {
    let parsed = MessageParser::default().parse(raw);
    let subject = parsed
        .as_ref()
        .and_then(|message| message.subject())
        .unwrap_or_default()
        .to_owned();
    let from = parsed
        .as_ref()
        .and_then(|message| message.from())
        .and_then(|from| from.first())
        .and_then(|from| from.address())
        .map(str::to_owned)
        .or_else(|| envelope.from.clone())
        .unwrap_or_default();
    let body = parsed
        .as_ref()
        .and_then(|message| message.body_text(0))
        .map(|text| text.replace("\r\n", "\n"))
        .unwrap_or_else(|| String::from_utf8_lossy(raw).into_owned());
    // Only a real HTML part: the parser would make one up from the text.
    let html = parsed
        .as_ref()
        .and_then(|message| {
            let part = message.html_part(0)?;
            matches!(part.body, PartType::Html(_)).then(|| message.body_html(0))?
        })
        .map(|html| html.into_owned())
        .unwrap_or_default();
    envelope
        .to
        .iter()
        .map(|to| {
            mailbox.push(Incoming {
                from: from.clone(),
                to: to.clone(),
                subject: subject.clone(),
                body: body.clone(),
                html: html.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8], max: usize) -> Vec<Option<Line>> {
        let mut reader = BufReader::with_capacity(4, input);
        let mut out = Vec::new();
        loop {
            let line = read_line(&mut reader, max).await.unwrap();
            let end = line.is_none();
            out.push(line);
            if end {
                return out;
            }
        }
    }

    #[tokio::test]
    async fn lines_end_in_crlf_or_lf_and_long_ones_are_dropped_whole() {
        let read = lines(b"EHLO a\r\nNOOP\nxxxxxxxxxxxxxxxxxxxx\r\nQUIT\r\nhalf", 10).await;
        assert_eq!(
            read,
            [
                Some(Line::Whole(b"EHLO a".to_vec())),
                Some(Line::Whole(b"NOOP".to_vec())),
                Some(Line::TooLong),
                Some(Line::Whole(b"QUIT".to_vec())),
                None,
            ]
        );
    }

    #[tokio::test]
    async fn data_is_dot_unstuffed_and_ends_at_the_lone_dot() {
        let mut reader = BufReader::new(&b"Subject: x\r\n\r\n..leading dot\r\n.\r\nQUIT\r\n"[..]);
        let Some(Data::Message(message)) = read_data(&mut reader).await.unwrap() else {
            panic!("no message");
        };
        assert_eq!(message, b"Subject: x\r\n\r\n.leading dot\r\n");
        assert_eq!(
            read_line(&mut reader, 100).await.unwrap(),
            Some(Line::Whole(b"QUIT".to_vec()))
        );
    }

    #[test]
    fn paths_take_the_address_and_its_parameters() {
        assert_eq!(
            path("FROM:<a@b.c> BODY=8BITMIME SMTPUTF8", "FROM:"),
            Some(("a@b.c", "BODY=8BITMIME SMTPUTF8"))
        );
        assert_eq!(path("from: <>", "FROM:"), Some(("", "")));
        assert_eq!(path("TO:<ü@b.c>", "TO:"), Some(("ü@b.c", "")));
        assert_eq!(path("TO:a@b.c", "TO:"), None);
        assert!(too_big("SIZE=99999999"));
        assert!(!too_big("SIZE=100 BODY=8BITMIME"));
    }
}
