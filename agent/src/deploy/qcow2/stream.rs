//! Writing a qcow2 image to a disk in one forward pass over the download.
//!
//! The stream is read in file order. What each region is becomes known
//! from the tables read before it: the header names the L1 table, the L1
//! table names the L2 tables, each L2 table names its data clusters. A
//! queue ordered by file offset holds what is still ahead; bytes nobody
//! named (refcounts, snapshots, padding) are hashed and dropped. Images
//! from `qemu-img convert`/`create` put every table before the clusters it
//! maps, so the queue holds about one L2 table's clusters at a time. A
//! table or cluster named after the stream passed it cannot be streamed and
//! is refused with that reason. Guest ranges no cluster wrote are zeroed at
//! the end, so the disk reads exactly as the image.

use super::{Header, refuse};
use crate::deploy::DeployError;
use crate::deploy::input::Input;
use crate::deploy::target::Target;
use std::collections::BTreeMap;
use std::io::Read;

const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
const COMPRESSED: u64 = 1 << 62;
const ZERO: u64 = 1;
/// Contiguous guest data is gathered up to this size before a write.
const WRITE_BATCH: usize = 4 << 20;

/// What sits at a file offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Item {
    L1,
    L2 { index: u64 },
    Data { guest: u64 },
    Compressed { guest: u64, len: u64 },
}

/// Converts the qcow2 image in `input` (its header in `head`) onto `t`;
/// returns the virtual size written.
pub fn convert<R: Read>(h: &Header, input: &mut Input<R>, t: &Target) -> Result<u64, DeployError> {
    if h.size > t.size() {
        return Err(DeployError::InvalidImage(format!(
            "the image's virtual size {} is larger than the disk ({} bytes)",
            h.size,
            t.size()
        )));
    }
    let mut c = Converter::new(h, t);
    c.queue(h.l1_offset, Item::L1)?;
    while let Some((off, item)) = c.pending.pop_first() {
        c.process(input, off, item)?;
    }
    c.flush()?;
    input.drain()?;
    c.zero_unwritten()?;
    Ok(h.size)
}

struct Converter<'a> {
    h: &'a Header,
    t: &'a Target,
    pending: BTreeMap<u64, Item>,
    written: Vec<u64>,
    batch: Vec<u8>,
    batch_guest: u64,
}

impl<'a> Converter<'a> {
    fn new(h: &'a Header, t: &'a Target) -> Self {
        let clusters = h.size.div_ceil(h.cluster_size());
        Converter {
            h,
            t,
            pending: BTreeMap::new(),
            written: vec![0; clusters.div_ceil(64) as usize],
            batch: Vec::new(),
            batch_guest: 0,
        }
    }

    fn queue(&mut self, off: u64, item: Item) -> Result<(), DeployError> {
        if let Some(prev) = self.pending.insert(off, item) {
            return Err(refuse(format!(
                "byte {off} is used twice ({prev:?} and {item:?})"
            )));
        }
        Ok(())
    }

    fn process<R: Read>(
        &mut self,
        input: &mut Input<R>,
        off: u64,
        item: Item,
    ) -> Result<(), DeployError> {
        let cs = self.h.cluster_size() as usize;
        match item {
            Item::L1 => {
                let table = input.fetch(off, self.h.l1_size as usize * 8, false)?;
                self.read_l1(&table)
            }
            Item::L2 { index } => {
                let table = input.fetch(off, cs, false)?;
                self.read_l2(index, &table)
            }
            Item::Data { guest } => {
                let data = input.fetch(off, cs, false)?;
                self.write(guest, &data)
            }
            Item::Compressed { guest, len } => {
                let packed = input.fetch(off, len as usize, true)?;
                let data = inflate(&packed, cs, guest)?;
                self.write(guest, &data)
            }
        }
    }

    fn read_l1(&mut self, table: &[u8]) -> Result<(), DeployError> {
        for (index, e) in table.chunks(8).enumerate() {
            let off = u64::from_be_bytes(e.try_into().unwrap_or_default()) & OFFSET_MASK;
            if off != 0 {
                self.queue(
                    off,
                    Item::L2 {
                        index: index as u64,
                    },
                )?;
            }
        }
        Ok(())
    }

    fn read_l2(&mut self, index: u64, table: &[u8]) -> Result<(), DeployError> {
        let cs = self.h.cluster_size();
        for (j, e) in table.chunks(8).enumerate() {
            let e = u64::from_be_bytes(e.try_into().unwrap_or_default());
            let guest = (index * self.h.l2_entries() + j as u64) * cs;
            if guest >= self.h.size || e & !(1 << 63) == 0 {
                continue;
            }
            if e & COMPRESSED != 0 {
                let (off, len) = self.compressed_extent(e);
                self.queue(off, Item::Compressed { guest, len })?;
            } else if e & ZERO == 0 {
                self.queue(e & OFFSET_MASK, Item::Data { guest })?;
            }
        }
        Ok(())
    }

    /// File offset and byte length of a compressed cluster's descriptor.
    fn compressed_extent(&self, e: u64) -> (u64, u64) {
        let x = 62 - (self.h.cluster_bits - 8);
        let off = e & ((1u64 << x) - 1);
        let sectors = ((e >> x) & ((1u64 << (self.h.cluster_bits - 8)) - 1)) + 1;
        (off, sectors * 512 - (off & 511))
    }

    /// Queues `data` (one cluster, clipped to the virtual size) for `guest`.
    fn write(&mut self, guest: u64, data: &[u8]) -> Result<(), DeployError> {
        let n = data.len().min((self.h.size - guest) as usize);
        let contiguous = self.batch_guest + self.batch.len() as u64 == guest;
        if !contiguous || self.batch.len() + n > WRITE_BATCH {
            self.flush()?;
            self.batch_guest = guest;
        }
        self.batch.extend_from_slice(&data[..n]);
        let c = guest / self.h.cluster_size();
        self.written[(c / 64) as usize] |= 1 << (c % 64);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), DeployError> {
        if !self.batch.is_empty() {
            self.t.write_at(self.batch_guest, &self.batch)?;
            self.batch.clear();
        }
        Ok(())
    }

    /// Zeroes every guest cluster no data reached, in runs.
    fn zero_unwritten(&self) -> Result<(), DeployError> {
        let cs = self.h.cluster_size();
        let clusters = self.h.size.div_ceil(cs);
        let is_written = |c: u64| self.written[(c / 64) as usize] & (1 << (c % 64)) != 0;
        let mut c = 0;
        while c < clusters {
            if is_written(c) {
                c += 1;
                continue;
            }
            let start = c;
            while c < clusters && !is_written(c) {
                c += 1;
            }
            let end = (c * cs).min(self.h.size);
            self.t.zero(start * cs, end - start * cs)?;
        }
        Ok(())
    }
}

/// Inflates one raw-deflate cluster; anything but exactly a cluster's
/// worth of output is a corrupt image.
fn inflate(packed: &[u8], cluster: usize, guest: u64) -> Result<Vec<u8>, DeployError> {
    let mut out = vec![0u8; cluster];
    let mut d = flate2::Decompress::new(false);
    let status = d.decompress(packed, &mut out, flate2::FlushDecompress::Finish);
    match status {
        Ok(_) if d.total_out() as usize == cluster => Ok(out),
        Ok(_) => Err(refuse(format!(
            "compressed cluster for guest offset {guest} inflates to {} bytes, not {cluster}",
            d.total_out()
        ))),
        Err(e) => Err(refuse(format!(
            "compressed cluster for guest offset {guest}: {e}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::checksum::{Algo, Hasher};
    use crate::deploy::qcow2::tests::header;
    use crate::deploy::target::test_file;

    const C: usize = 65536;

    /// A 1 MiB-disk qcow2: L1 at cluster 3, its L2 at cluster `l2`, guest
    /// cluster 2 stored at file cluster `data`.
    fn image(l2: usize, data: usize) -> Vec<u8> {
        let mut f = vec![0u8; C * (l2.max(data) + 1)];
        f[..512].copy_from_slice(&header(1 << 20));
        f[3 * C..3 * C + 8].copy_from_slice(&((l2 * C) as u64 | 1 << 63).to_be_bytes());
        f[l2 * C + 16..l2 * C + 24].copy_from_slice(&((data * C) as u64 | 1 << 63).to_be_bytes());
        f[data * C..(data + 1) * C].fill(0x77);
        f
    }

    fn convert_bytes(img: &[u8], disk: &std::path::Path) -> Result<u64, DeployError> {
        let t = Target::open(disk).unwrap();
        let mut input = Input::new(img, Hasher::new(Algo::Sha256));
        let head = input.fetch(0, 4096, true)?;
        convert(&Header::parse(&head)?, &mut input, &t)
    }

    #[test]
    fn tables_before_data_convert_and_holes_become_zeros() {
        let (_d, p) = test_file(vec![0xABu8; 2 << 20]);
        assert_eq!(convert_bytes(&image(4, 5), &p).unwrap(), 1 << 20);
        let out = std::fs::read(&p).unwrap();
        assert!(
            out[..2 * C].iter().all(|b| *b == 0),
            "unallocated guest clusters read as zeros"
        );
        assert!(out[2 * C..3 * C].iter().all(|b| *b == 0x77));
        assert!(out[3 * C..1 << 20].iter().all(|b| *b == 0));
        assert!(
            out[1 << 20..].iter().all(|b| *b == 0xAB),
            "beyond the virtual size: untouched"
        );
    }

    #[test]
    fn a_table_after_its_data_cannot_be_streamed() {
        let (_d, p) = test_file(vec![0u8; 2 << 20]);
        let e = convert_bytes(&image(6, 5), &p).unwrap_err().to_string();
        assert!(e.contains("cannot be streamed"), "{e}");
    }
}
