//! Copying a stream to the disk with the network and the disk busy at the
//! same time: this thread reads (and hashes), a second one writes, with at
//! most `DEPTH` chunks of `CHUNK` bytes in flight, so memory is bounded
//! whatever the image size.

use super::DeployError;
use super::input::Input;
use super::target::Target;
use std::io::Read;
use std::sync::mpsc;

/// Bytes per chunk.
pub const CHUNK: usize = 1 << 20;
/// Chunks queued for the writer.
const DEPTH: usize = 4;

/// Copies `input` to `t` from byte `start` up to byte `size`; the stream
/// ending early is a download error.
pub fn copy<R: Read>(
    t: &Target,
    input: &mut Input<R>,
    start: u64,
    size: u64,
) -> Result<(), DeployError> {
    let (tx, rx) = mpsc::sync_channel::<(u64, Vec<u8>)>(DEPTH);
    let (free_tx, free_rx) = mpsc::channel::<Vec<u8>>();
    for _ in 0..=DEPTH {
        let _ = free_tx.send(vec![0u8; CHUNK]);
    }
    std::thread::scope(|s| {
        let writer = s.spawn(move || -> Result<(), DeployError> {
            for (off, buf) in rx {
                t.write_at(off, &buf)?;
                let _ = free_tx.send(buf);
            }
            Ok(())
        });
        let read = feed(input, start, size, &tx, &free_rx);
        drop(tx);
        let written = writer
            .join()
            .unwrap_or_else(|_| Err(DeployError::Write("the disk writer thread panicked".into())));
        written.and(read)
    })
}

/// Reads chunks and hands them to the writer; stops quietly when the
/// writer is gone (its own error is the one reported).
fn feed<R: Read>(
    input: &mut Input<R>,
    start: u64,
    size: u64,
    tx: &mpsc::SyncSender<(u64, Vec<u8>)>,
    free: &mpsc::Receiver<Vec<u8>>,
) -> Result<(), DeployError> {
    let mut off = start;
    while off < size {
        let Ok(mut buf) = free.recv() else {
            return Ok(());
        };
        buf.resize(CHUNK, 0);
        let want = (size - off).min(CHUNK as u64) as usize;
        let n = input.fill(&mut buf[..want])?;
        if n == 0 {
            return Err(DeployError::Download(format!(
                "the download ended after {off} of {size} bytes"
            )));
        }
        buf.truncate(n);
        if tx.send((off, buf)).is_err() {
            return Ok(());
        }
        off += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::checksum::{Algo, Hasher};

    #[test]
    fn copies_everything_and_reports_a_short_stream_or_a_full_disk() {
        let (_d, p) = crate::deploy::target::test_file(vec![0u8; 5 << 20]);
        let t = Target::open(&p).unwrap();
        let data: Vec<u8> = (0..(3 << 20) + 5).map(|i| (i % 253) as u8).collect();
        let mut input = Input::new(&data[..], Hasher::new(Algo::Sha256));
        copy(&t, &mut input, 0, data.len() as u64).unwrap();
        assert_eq!(&std::fs::read(&p).unwrap()[..data.len()], &data[..]);
        let mut input = Input::new(&data[..], Hasher::new(Algo::Sha256));
        let e = copy(&t, &mut input, 0, 4 << 20).unwrap_err();
        assert!(e.to_string().contains("ended after"), "{e}");
        let big = vec![1u8; 6 << 20];
        let mut input = Input::new(&big[..], Hasher::new(Algo::Sha256));
        let e = copy(&t, &mut input, 0, 6 << 20).unwrap_err();
        assert!(e.to_string().contains("past the end"), "{e}");
    }
}
