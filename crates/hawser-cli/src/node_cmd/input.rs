//! Standard input of `hawser node`, read on a task of its own: one item per line, a bad line
//! never ending the input.

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::sync::mpsc;

/// One line of standard input, or why it was skipped.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A line (without its `\n` or `\r\n`).
    Text(String),
    /// Line `number` (from 1) was not UTF-8.
    NotUtf8 {
        /// Its number.
        number: u64,
    },
    /// Line `number` was longer than `max` bytes.
    TooLong {
        /// Its number.
        number: u64,
        /// The limit.
        max: usize,
    },
    /// Reading failed (the input ends there).
    Failed(String),
}

/// Reads `input` line by line into a channel until it ends or the receiver is dropped. Lines
/// longer than `max` bytes are skipped whole, without being held in memory.
pub fn spawn_reader<R>(input: R, max: usize) -> mpsc::Receiver<Line>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let mut reader = BufReader::new(input);
        let mut number = 0u64;
        let mut buf = Vec::new();
        loop {
            buf.clear();
            number += 1;
            let limit = max as u64 + 2;
            let read = (&mut reader).take(limit).read_until(b'\n', &mut buf).await;
            let line = match read {
                Ok(0) => return,
                Ok(_) if buf.last() != Some(&b'\n') && buf.len() as u64 == limit => {
                    // Skip the rest of the line.
                    if let Err(e) = skip_line(&mut reader).await {
                        let _ = tx.send(Line::Failed(e.to_string())).await;
                        return;
                    }
                    Line::TooLong { number, max }
                }
                Ok(_) => {
                    if buf.last() == Some(&b'\n') {
                        buf.pop();
                    }
                    if buf.last() == Some(&b'\r') {
                        buf.pop();
                    }
                    match String::from_utf8(std::mem::take(&mut buf)) {
                        Ok(s) => Line::Text(s),
                        Err(_) => Line::NotUtf8 { number },
                    }
                }
                Err(e) => Line::Failed(e.to_string()),
            };
            let failed = matches!(line, Line::Failed(_));
            if tx.send(line).await.is_err() || failed {
                return;
            }
        }
    });
    rx
}

/// Consumes input up to and including the next `\n`.
async fn skip_line<R: tokio::io::AsyncBufRead + Unpin>(reader: &mut R) -> std::io::Result<()> {
    loop {
        let chunk = reader.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(());
        }
        match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => {
                reader.consume(i + 1);
                return Ok(());
            }
            None => {
                let n = chunk.len();
                reader.consume(n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bad_lines_are_reported_and_reading_goes_on() {
        let input: &[u8] = b"one\r\n\xff\xfe\ntoo long line\nlast";
        let mut rx = spawn_reader(input, 8);
        let mut got = Vec::new();
        while let Some(l) = rx.recv().await {
            got.push(l);
        }
        assert_eq!(
            got,
            [
                Line::Text("one".into()),
                Line::NotUtf8 { number: 2 },
                Line::TooLong { number: 3, max: 8 },
                Line::Text("last".into()),
            ]
        );
    }
}
