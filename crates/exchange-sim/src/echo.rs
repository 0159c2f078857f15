//! Repeating a client's input in an error message, bounded: a message names what was wrong
//! without sending a 100 KB input back.
//!
//! - [`clip`] for an input the simulator puts in its own message: at most [`ECHO_CHARS`]
//!   characters, then "…" and the input's length, e.g. `aaaa…(64 chars)… (102400 chars)`.
//! - [`clip_quoted`] for a message written by a library (serde, axum) that may repeat inputs
//!   anywhere: between `"…"` or `` `…` `` quotes, or bare (the path of a field, which names an
//!   unknown key as it was sent): every quoted part and every long bare word is clipped, then
//!   the whole message is cut to [`MESSAGE_CHARS`].
//! - [`clip_message`] cuts any message to [`MESSAGE_CHARS`] (the error types apply it to every
//!   message, as a last bound).

use std::borrow::Cow;

/// At most this many characters of one input are repeated.
pub const ECHO_CHARS: usize = 64;

/// A whole error message is cut to this many characters.
pub const MESSAGE_CHARS: usize = 400;

/// `text` cut to `max` characters: unchanged when it fits, else its first `max` characters,
/// "…" and its length in characters.
fn clip_to(text: &str, max: usize) -> Cow<'_, str> {
    match text.char_indices().nth(max) {
        None => Cow::Borrowed(text),
        Some((end, _)) => Cow::Owned(format!(
            "{}… ({} chars)",
            &text[..end],
            text.chars().count()
        )),
    }
}

/// An input as an error message may repeat it: whole up to [`ECHO_CHARS`] characters, else
/// its first [`ECHO_CHARS`] characters, "…" and its length.
pub fn clip(input: &str) -> Cow<'_, str> {
    clip_to(input, ECHO_CHARS)
}

/// A message cut to [`MESSAGE_CHARS`] characters (see [`clip`]).
pub fn clip_message(message: &str) -> Cow<'_, str> {
    clip_to(message, MESSAGE_CHARS)
}

/// The length of the quoted part that starts `text` (after the opening `quote`): the index
/// of the closing quote. Inside `"…"` a backslash escapes the next character (serde writes
/// strings with Rust's `{:?}`).
fn closing(text: &str, quote: u8) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quote == b'"' => i += 2,
            b if b == quote => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// Whether `c` ends a bare word of a message.
fn separates(c: char) -> bool {
    c.is_whitespace() || matches!(c, ':' | ',' | ';')
}

/// Appends `text` (no quotes in it) to `out`, every word of it clipped with [`clip`].
fn push_clipped_words(out: &mut String, text: &str) {
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if separates(c) {
            out.push_str(&clip(&text[start..i]));
            out.push(c);
            start = i + c.len_utf8();
        }
    }
    out.push_str(&clip(&text[start..]));
}

/// A message from a library, which may repeat a client's input anywhere in it (`invalid
/// type: string "…"`, ``unknown field `…` ``, or bare as a step of a field's path): every
/// part between `"` or `` ` `` quotes and every bare word (between spaces, `:`, `,`, `;`)
/// clipped with [`clip`], then the whole cut to [`MESSAGE_CHARS`].
pub fn clip_quoted(message: &str) -> String {
    let mut out = String::new();
    let mut rest = message;
    while let Some(open) = rest.find(['"', '`']) {
        let quote = rest.as_bytes()[open];
        push_clipped_words(&mut out, &rest[..open]);
        out.push(char::from(quote));
        rest = &rest[open + 1..];
        if let Some(len) = closing(rest, quote) {
            out.push_str(&clip(&rest[..len]));
            out.push(char::from(quote));
            rest = &rest[len + 1..];
        }
    }
    push_clipped_words(&mut out, rest);
    clip_message(&out).into_owned()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn short_inputs_are_kept() {
        assert_eq!(clip(""), "");
        let exact = "x".repeat(ECHO_CHARS);
        assert!(matches!(clip(&exact), Cow::Borrowed(_)));
        assert_eq!(
            clip_quoted("unknown field `colour`"),
            "unknown field `colour`"
        );
        let serde = r#"a: invalid type: string "a \"b\" c", expected u32 at line 1 column 9"#;
        assert_eq!(clip_quoted(serde), serde);
    }

    #[test]
    fn long_inputs_are_clipped_with_their_length() {
        let long = "é".repeat(100_000);
        let clipped = clip(&long);
        assert_eq!(
            clipped,
            format!("{}… (100000 chars)", "é".repeat(ECHO_CHARS))
        );
        let message = format!(
            "paths[1]: {:?} is not a Binance path; unknown field `{}` at line 1",
            format!("\"{long}"),
            "k".repeat(70)
        );
        let clipped = clip_quoted(&message);
        assert!(clipped.starts_with("paths[1]: \"\\\"é"), "{clipped}");
        assert!(
            clipped.contains("é… (100002 chars)\" is not a Binance path"),
            "{clipped}"
        );
        assert!(
            clipped.contains(&format!("`{}… (70 chars)` at line 1", "k".repeat(64))),
            "{clipped}"
        );
    }

    #[test]
    fn long_bare_words_are_clipped() {
        let key = "k".repeat(1000);
        let message = format!("Failed: {key}: unknown field `{key}`, expected `a`");
        assert_eq!(
            clip_quoted(&message),
            format!(
                "Failed: {short}… (1000 chars): unknown field `{short}… (1000 chars)`, expected `a`",
                short = "k".repeat(64)
            )
        );
        let unquoted = format!("there is no account {}", "a".repeat(100_000));
        assert_eq!(
            clip_quoted(&unquoted),
            format!("there is no account {}… (100000 chars)", "a".repeat(64))
        );
    }

    #[test]
    fn messages_are_bounded_whatever_they_quote() {
        let many_words = "a ".repeat(100_000);
        let clipped = clip_quoted(&many_words);
        assert!(clipped.chars().count() < MESSAGE_CHARS + 20, "{clipped}");
        assert!(clipped.ends_with("… (200000 chars)"), "{clipped}");
        let unbalanced = format!("\"{}", "\\".repeat(1001));
        assert!(clip_quoted(&unbalanced).chars().count() < MESSAGE_CHARS + 20);
        let many = "`a` ".repeat(10_000);
        assert!(clip_quoted(&many).chars().count() < MESSAGE_CHARS + 20);
    }
}
