//! BatchWriteItem requests from a write's batches: items rendered from the
//! batches' bytes, each key once per call, at most 25 items and 16 MB a
//! request; a packed tenant's batches as packed items.

use std::collections::HashMap;

use awp_store::batch::StoredRecords;
use awp_store::dynamodb::AttributeItems;
use awp_store::packed::Packer;
use awp_store::{AcceptedBatch, ItemSizer, RangeKey};

use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};

use super::SinkError;

/// BatchWriteItem's limits.
pub(super) const MAX_REQUEST_ITEMS: usize = 25;
pub(super) const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;

/// The batches' items as BatchWriteItem requests, rendered one request at a
/// time as the write loop asks for them (so a write holds the attribute maps
/// of the requests in flight, not of all its items): ≤ 25 items, ≤ 16 MB,
/// each key once (the later copy of a key wins; order among distinct keys
/// is kept).
pub(super) struct Requests<'a> {
    pub(super) batches: std::slice::Iter<'a, AcceptedBatch>,
    /// Per (device, key), the number of its last copy among all the items.
    pub(super) last: HashMap<(&'a str, RangeKey), usize>,
    /// The batch being rendered: its records, attribute builder and sizer.
    pub(super) current: Option<(&'a AcceptedBatch, StoredRecords<'a>, AttributeItems, ItemSizer)>,
    /// Items seen so far, copies included.
    pub(super) seen: usize,
    /// An item that did not fit the last request, with its size.
    pub(super) carried: Option<(WriteRequest, usize)>,
}

impl<'a> Requests<'a> {
    pub(super) fn new(batches: &'a [AcceptedBatch]) -> Result<Requests<'a>, SinkError> {
        let mut last = HashMap::new();
        let mut n = 0usize;
        for batch in batches {
            for record in batch.records() {
                last.insert((batch.device_id(), record?.key), n);
                n += 1;
            }
        }
        Ok(Requests {
            batches: batches.iter(),
            last,
            current: None,
            seen: 0,
            carried: None,
        })
    }

    /// The next item to write and its size, skipping copies of keys that
    /// come again later; `None` when all are rendered.
    pub(super) fn next_item(&mut self) -> Result<Option<(WriteRequest, usize)>, SinkError> {
        if let Some(item) = self.carried.take() {
            return Ok(Some(item));
        }
        loop {
            if self.current.is_none() {
                let Some(batch) = self.batches.next() else {
                    return Ok(None);
                };
                self.current = Some((batch, batch.records(), AttributeItems::new(batch), batch.item_sizer()));
            }
            let Some((batch, records, items, sizer)) = &mut self.current else {
                continue;
            };
            let Some(record) = records.next() else {
                self.current = None;
                continue;
            };
            let record = record?;
            let this = self.seen;
            self.seen += 1;
            if self.last.get(&(batch.device_id(), record.key)) != Some(&this) {
                continue;
            }
            let size = sizer.item_size(&record.key, &record.record);
            let put = PutRequest::builder()
                .set_item(Some(items.item(&record)))
                .build()
                .map_err(|e| SinkError::fatal_from("cannot build a PutRequest", e))?;
            return Ok(Some((WriteRequest::builder().put_request(put).build(), size)));
        }
    }

    /// The next request, or `None` when every item is in one.
    pub(super) fn next_request(&mut self) -> Result<Option<Vec<WriteRequest>>, SinkError> {
        let mut request = Vec::with_capacity(MAX_REQUEST_ITEMS);
        let mut bytes = 0;
        while request.len() < MAX_REQUEST_ITEMS {
            let Some((item, size)) = self.next_item()? else { break };
            if bytes + size > MAX_REQUEST_BYTES && !request.is_empty() {
                self.carried = Some((item, size));
                break;
            }
            request.push(item);
            bytes += size;
        }
        Ok((!request.is_empty()).then_some(request))
    }
}

/// How a failed request is handled.
/// A write's requests in the packed layout: every batch's packed items (one
/// per batch, or its parts), at most 25 items and 16 MB a request; a key
/// named twice (a batch resent while its first copy was queued) is written
/// once, the later copy winning.
pub(super) fn packed_requests(
    packer: &mut Packer,
    batches: &[AcceptedBatch],
) -> Result<Vec<Vec<WriteRequest>>, SinkError> {
    let mut items: Vec<(WriteRequest, usize)> = Vec::with_capacity(batches.len());
    let mut at: HashMap<(&str, String), usize> = HashMap::with_capacity(batches.len());
    for batch in batches {
        packer.pack::<SinkError>(batch, |item| {
            let put = PutRequest::builder()
                .set_item(Some(awp_store::dynamodb::packed_item(&item)))
                .build()
                .map_err(|e| SinkError::fatal_from("cannot build a PutRequest", e))?;
            let request = (WriteRequest::builder().put_request(put).build(), item.size());
            match at.entry((batch.device_id(), item.rk.to_owned())) {
                std::collections::hash_map::Entry::Occupied(e) => items[*e.get()] = request,
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(items.len());
                    items.push(request);
                }
            }
            Ok(())
        })?;
    }
    let mut requests = Vec::new();
    let (mut request, mut bytes) = (Vec::new(), 0);
    for (item, size) in items {
        if request.len() == MAX_REQUEST_ITEMS || (bytes + size > MAX_REQUEST_BYTES && !request.is_empty()) {
            requests.push(std::mem::take(&mut request));
            bytes = 0;
        }
        request.push(item);
        bytes += size;
    }
    if !request.is_empty() {
        requests.push(request);
    }
    Ok(requests)
}
