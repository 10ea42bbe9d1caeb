//! One write as one transaction: every item of the batches upserted with a
//! cached statement from one reused buffer, or a refused batch's items
//! deleted again.

use std::path::Path;

use awp_store::AcceptedBatch;
use awp_store::packed::PackError;
use awp_store::sqlite::{DELETE, UPSERT};
use rusqlite::{TransactionBehavior, params};

use super::SinkError;

use super::*;

/// One transaction: every item of every batch, or none.
pub(super) fn write_batches(store: &mut Store, batches: &[AcceptedBatch]) -> Result<(), WriteError> {
    let tx = store.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        let mut stmt = tx.prepare_cached(UPSERT)?;
        for batch in batches {
            match &mut store.packer {
                None => store.json.render::<WriteError>(batch, |item| {
                    stmt.execute(params![item.device, item.rk, item.json])?;
                    Ok(())
                })?,
                Some(packer) => {
                    let text = &mut store.packed_json;
                    packer.pack::<WriteError>(batch, |item| {
                        text.clear();
                        item.push_json(text);
                        stmt.execute(params![batch.device_id(), item.rk, text.as_str()])?;
                        Ok(())
                    })?
                }
            }
        }
    }
    tx.commit()?;
    Ok(())
}

/// What can go wrong inside a write.
pub(super) enum WriteError {
    Sqlite(rusqlite::Error),
    Batch(awp_protocol::BatchError),
    Pack(PackError),
}

impl From<PackError> for WriteError {
    fn from(e: PackError) -> Self {
        WriteError::Pack(e)
    }
}

impl WriteError {
    pub(super) fn into_sink_error(self, path: &Path) -> SinkError {
        match self {
            WriteError::Sqlite(e) => sink_error(path, e),
            WriteError::Batch(e) => SinkError::from(e),
            WriteError::Pack(e) => SinkError::from(e),
        }
    }
}

impl From<rusqlite::Error> for WriteError {
    fn from(e: rusqlite::Error) -> Self {
        WriteError::Sqlite(e)
    }
}

impl From<awp_protocol::BatchError> for WriteError {
    fn from(e: awp_protocol::BatchError) -> Self {
        WriteError::Batch(e)
    }
}

/// Deletes a batch's rows, in one transaction.
pub(super) fn delete_batch(store: &mut Store, batch: &AcceptedBatch) -> Result<(), WriteError> {
    let tx = store.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        let mut stmt = tx.prepare_cached(DELETE)?;
        match &mut store.packer {
            None => {
                for record in batch.records() {
                    stmt.execute(params![batch.device_id(), record?.key.to_string()])?;
                }
            }
            Some(packer) => packer.pack::<WriteError>(batch, |item| {
                stmt.execute(params![batch.device_id(), item.rk])?;
                Ok(())
            })?,
        }
    }
    tx.commit()?;
    Ok(())
}
