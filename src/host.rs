//! The few host calls whose failures the filter must handle itself.
//!
//! The SDK's own wrappers for shared data, properties and local responses
//! panic on any status other than Ok, NotFound and CasMismatch, and a panic
//! aborts the whole VM of an nginx worker. These call the proxy-wasm 0.2.1
//! imports directly and return the status instead.

use crate::store::{CounterStore, WriteError};

const STATUS_OK: u32 = 0;
const STATUS_NOT_FOUND: u32 = 1;
const STATUS_CAS_MISMATCH: u32 = 8;

// The SDK declares the same imports with its own `Status` enum as the result;
// both are a u32 on the wire.
#[allow(clashing_extern_declarations)]
#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;

    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;

    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;

    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
}

/// Takes ownership of a buffer the host wrote through the guest's allocator.
///
/// # Safety
/// `data` must be null or come from `proxy_on_memory_allocate` with exactly
/// `size` bytes, which the SDK's allocator creates as a `Vec` of that
/// capacity.
unsafe fn take_host_buffer(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() || size == 0 {
        return Vec::new();
    }
    // SAFETY: see the function's contract.
    unsafe { Vec::from_raw_parts(data, size, size) }
}

/// Shared data through the raw imports.
pub struct SharedData;

impl CounterStore for SharedData {
    fn get(&mut self, key: &[u8]) -> Result<Option<(Vec<u8>, u32)>, u32> {
        let mut data: *mut u8 = std::ptr::null_mut();
        let mut size: usize = 0;
        let mut cas: u32 = 0;
        // SAFETY: the pointers are valid for writes for the whole call.
        let status = unsafe {
            proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas)
        };
        match status {
            // SAFETY: on Ok the host allocated `size` bytes with our allocator.
            STATUS_OK => Ok(Some((unsafe { take_host_buffer(data, size) }, cas))),
            STATUS_NOT_FOUND => Ok(None),
            other => Err(other),
        }
    }

    fn set(&mut self, key: &[u8], value: &[u8], cas: u32) -> Result<(), WriteError> {
        // SAFETY: key and value are valid for reads for the whole call.
        let status = unsafe {
            proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas)
        };
        match status {
            STATUS_OK => Ok(()),
            STATUS_CAS_MISMATCH => Err(WriteError::CasMismatch),
            other => Err(WriteError::Failed(other)),
        }
    }
}

/// Returns a property such as `["source", "address"]`, or `None` when the host
/// has no such property or fails to read it.
pub fn property(path: &[&str]) -> Option<Vec<u8>> {
    let mut encoded = Vec::with_capacity(path.iter().map(|part| part.len() + 1).sum());
    for part in path {
        encoded.extend_from_slice(part.as_bytes());
        encoded.push(0);
    }
    // Segments are separated, not terminated, by NUL.
    encoded.pop();
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the pointers are valid for writes for the whole call.
    let status =
        unsafe { proxy_get_property(encoded.as_ptr(), encoded.len(), &mut data, &mut size) };
    if status != STATUS_OK {
        return None;
    }
    // SAFETY: on Ok the host allocated `size` bytes with our allocator.
    let value = unsafe { take_host_buffer(data, size) };
    Some(value)
}

/// Encodes header pairs in the proxy-wasm map format: the pair count, each
/// name and value length (all u32, little-endian), then each name and value
/// followed by a NUL byte.
fn encode_pairs(pairs: &[(&str, &str)]) -> Vec<u8> {
    let size = 4 + pairs
        .iter()
        .map(|(n, v)| n.len() + v.len() + 10)
        .sum::<usize>();
    let mut bytes = Vec::with_capacity(size);
    let length = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
    bytes.extend_from_slice(&length(pairs.len()));
    for (name, value) in pairs {
        bytes.extend_from_slice(&length(name.len()));
        bytes.extend_from_slice(&length(value.len()));
    }
    for (name, value) in pairs {
        bytes.extend_from_slice(name.as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(value.as_bytes());
        bytes.push(0);
    }
    bytes
}

/// Sends a local response with `status`, `headers` and `body` instead of
/// forwarding the request; an error carries the status the host returned.
pub fn send_local_response(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Result<(), u32> {
    let pairs = encode_pairs(headers);
    // SAFETY: every pointer is valid for reads of its length for the call.
    let result = unsafe {
        proxy_send_local_response(
            u32::from(status),
            std::ptr::null(),
            0,
            body.as_ptr(),
            body.len(),
            pairs.as_ptr(),
            pairs.len(),
            -1,
        )
    };
    match result {
        STATUS_OK => Ok(()),
        other => Err(other),
    }
}
