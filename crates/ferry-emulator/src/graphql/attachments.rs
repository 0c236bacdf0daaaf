//! In-memory attachment storage behind `attachmentStorage` and the upload endpoint.

use std::collections::HashMap;

use bytes::Bytes;
use parking_lot::RwLock;

/// One uploaded file.
#[derive(Clone, Debug)]
pub struct StoredFile {
    /// Storage key (what `AttachmentInput.key` refers to).
    pub key: String,
    /// Original file name.
    pub filename: String,
    /// Content type given at upload.
    pub content_type: String,
    /// The bytes.
    pub data: Bytes,
}

/// Uploaded files by key.
#[derive(Debug, Default)]
pub struct AttachmentStore {
    files: RwLock<HashMap<String, StoredFile>>,
}

impl AttachmentStore {
    /// Keep a file.
    pub fn insert(&self, file: StoredFile) {
        self.files.write().insert(file.key.clone(), file);
    }

    /// A file by key.
    pub fn get(&self, key: &str) -> Option<StoredFile> {
        self.files.read().get(key).cloned()
    }

    /// Forget all files.
    pub fn clear(&self) {
        self.files.write().clear();
    }
}
