//! Runs a compiled filter the way one Kong worker does.
//!
//! A [`FilterModule`] compiles a `.wasm` file once. A [`Worker`] is one guest
//! instance of it, one nginx worker's VM, started and configured once. It
//! then serves requests one at a time with [`Worker::run`]. Workers that hold
//! the same `Arc<SharedStore>` share their data, like the workers of one
//! Kong node.
//!
//! # Examples
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use local_gateway::{
//!     filter_wasm_path, FilterModule, ManualClock, Request, SharedStore, UpstreamResponse,
//!     Worker, WorkerOptions,
//! };
//!
//! # fn main() -> Result<(), local_gateway::Error> {
//! let module = FilterModule::load(filter_wasm_path())?;
//! let clock = Arc::new(ManualClock::default());
//! let options = WorkerOptions::new(r#"{"limit": 2, "window_secs": 60}"#)
//!     .store(Arc::new(SharedStore::kong()))
//!     .clock(clock.clone());
//! let mut worker = Worker::start(&module, options)?;
//!
//! let exchange = worker.run(Request::get("/"), &mut |_| UpstreamResponse::ok())?;
//! assert!(exchange.reached_upstream);
//! clock.advance_ms(1_000);
//! # Ok(())
//! # }
//! ```

mod clock;
mod exchange;
mod http;
mod logs;
mod stream;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use proxy_wasm_host::abi::v0_2_1::types::Action;
use proxy_wasm_host::abi::v0_2_1::{
    CallScope, Callback, Clock, ContextId, Guest, GuestError, GuestSpec, Host, LogSink,
    PluginConfig, SharedServices, Started, StreamKind, VmServices,
};
use proxy_wasm_host::{Engine, Limits, Module};

use crate::error::Error;
use crate::store::SharedStore;

pub use clock::{ManualClock, MillisecondSystemClock};
pub use http::{Exchange, Request, UpstreamRequest, UpstreamResponse};
pub use logs::{level_name, LogCapture, LogLine};

use stream::HttpStream;

/// Maximum time one guest callback may run before it is stopped.
///
/// The host measures it in wall-clock time, so on a loaded machine (parallel
/// tests on two cores) it includes time the guest spent waiting for a
/// processor. The bound stops a runaway filter without failing a slow but
/// healthy one.
const GUEST_CALL_TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The proxy whose host behaviour a worker emulates.
///
/// The store's semantics are chosen separately, with [`SharedStore::kong`] or
/// [`SharedStore::envoy`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HostFlavor {
    /// Kong's engine, ngx_wasm_module. `end_of_stream` is always false in the
    /// header callbacks, and `source.address` has no port. The request map
    /// starts with `:path`, `:method`, `:scheme` and `:authority`, and the
    /// response map has no `:status`. The response body ends with an empty
    /// `on_response_body` call whose `end_of_stream` is true, and the
    /// response phase runs in chain order.
    #[default]
    Kong,
    /// Envoy. `end_of_stream` is true in a header callback when no body
    /// follows, and `source.address` keeps its port. The response map has
    /// `:status`, the last body chunk carries `end_of_stream`, and the
    /// response phase runs in reverse chain order.
    Envoy,
}

/// A compiled filter, ready to start workers from.
///
/// A clone shares the compiled code, so the module is compiled once however
/// many workers and threads use it.
#[derive(Clone)]
pub struct FilterModule {
    name: String,
    path: PathBuf,
    host: Host,
    module: Module,
}

impl fmt::Debug for FilterModule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FilterModule")
            .field("name", &self.name)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl FilterModule {
    /// Reads and compiles the `.wasm` file at `path`; the filter's name is
    /// the file name without `.wasm`, as Kong names filters.
    ///
    /// # Errors
    ///
    /// Returns [`Error::FilterNotBuilt`] when the file does not exist, with
    /// a message that names `./build.sh`, [`Error::ReadFilter`] when it
    /// cannot be read, and [`Error::CompileFilter`] when it is not a valid
    /// module.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => Error::FilterNotBuilt {
                path: path.to_path_buf(),
            },
            _ => Error::ReadFilter {
                path: path.to_path_buf(),
                source,
            },
        })?;
        let name = path
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_default();
        Self::compile(name, path.to_path_buf(), &bytes)
    }

    /// Like [`FilterModule::load`], but compiles each path once per process
    /// and returns a clone of the first result afterwards.
    ///
    /// Compiling a filter takes a noticeable time in a debug build, so tests
    /// that each start workers share one compilation this way. An error is
    /// not cached.
    ///
    /// # Errors
    ///
    /// The errors of [`FilterModule::load`].
    pub fn load_cached(path: impl AsRef<Path>) -> Result<Self, Error> {
        static CACHE: OnceLock<Mutex<HashMap<PathBuf, FilterModule>>> = OnceLock::new();
        let path = path.as_ref();
        let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
        let mut modules = cache.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(module) = modules.get(path) {
            return Ok(module.clone());
        }
        let module = Self::load(path)?;
        modules.insert(path.to_path_buf(), module.clone());
        Ok(module)
    }

    /// Compiles `bytes` as the filter `name`.
    ///
    /// # Errors
    ///
    /// Returns [`Error::CompileFilter`] when the bytes are not a valid module.
    pub fn from_bytes(name: &str, bytes: &[u8]) -> Result<Self, Error> {
        Self::compile(name.to_owned(), PathBuf::from(name), bytes)
    }

    fn compile(name: String, path: PathBuf, bytes: &[u8]) -> Result<Self, Error> {
        let compile_error = |source| Error::CompileFilter {
            path: path.clone(),
            source,
        };
        let engine = Engine::new().map_err(compile_error)?;
        let host = Host::new(&engine).map_err(compile_error)?;
        let module = Module::new(&engine, bytes).map_err(compile_error)?;
        Ok(Self {
            name,
            path,
            host,
            module,
        })
    }

    /// Returns the filter's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Returns the file the module was read from, or its name for
    /// [`FilterModule::from_bytes`].
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// How to start one worker.
///
/// Clone it to start several workers that share the store, the clock and the
/// log capture.
#[derive(Clone)]
pub struct WorkerOptions {
    /// The filter's configuration, the JSON bytes Kong passes to
    /// `on_configure`; empty means no configuration.
    pub config: Vec<u8>,
    /// The shared data of every worker of the node.
    pub store: Arc<SharedStore>,
    /// The clock the guest reads.
    pub clock: Arc<dyn Clock>,
    /// The sink of the guest's log lines.
    pub logs: Arc<LogCapture>,
    /// The `plugin_name` property; empty means the module's name, as Kong
    /// uses the filter name.
    pub plugin_name: String,
    /// The VM id; empty means the plugin name. The store ignores it, so all
    /// workers of one store share one namespace whatever their VM ids.
    pub vm_id: String,
    /// Properties served for every request, such as `kong.route_id`, by
    /// dotted name; a request's own properties take precedence.
    pub properties: Vec<(String, Vec<u8>)>,
    /// Whose host behaviour to emulate.
    pub flavor: HostFlavor,
}

impl Default for WorkerOptions {
    /// No configuration, a fresh [`SharedStore::kong`], the
    /// [`MillisecondSystemClock`], and a [`LogCapture`] that prints nothing.
    fn default() -> Self {
        Self {
            config: Vec::new(),
            store: Arc::new(SharedStore::kong()),
            clock: Arc::new(MillisecondSystemClock),
            logs: Arc::new(LogCapture::new()),
            plugin_name: String::new(),
            vm_id: String::new(),
            properties: Vec::new(),
            flavor: HostFlavor::Kong,
        }
    }
}

impl fmt::Debug for WorkerOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerOptions")
            .field("config", &String::from_utf8_lossy(&self.config))
            .field("store", &self.store)
            .field("plugin_name", &self.plugin_name)
            .field("vm_id", &self.vm_id)
            .field("properties", &self.properties.len())
            .field("flavor", &self.flavor)
            .finish_non_exhaustive()
    }
}

impl WorkerOptions {
    /// Creates the defaults with `config` as the filter's configuration.
    pub fn new(config: impl Into<Vec<u8>>) -> Self {
        Self {
            config: config.into(),
            ..Self::default()
        }
    }

    /// Sets the shared store.
    #[must_use]
    pub fn store(mut self, store: Arc<SharedStore>) -> Self {
        self.store = store;
        self
    }

    /// Sets the clock.
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Sets the log capture.
    #[must_use]
    pub fn logs(mut self, logs: Arc<LogCapture>) -> Self {
        self.logs = logs;
        self
    }

    /// Sets the plugin name.
    #[must_use]
    pub fn plugin_name(mut self, name: &str) -> Self {
        self.plugin_name = name.to_owned();
        self
    }

    /// Sets the VM id.
    #[must_use]
    pub fn vm_id(mut self, vm_id: &str) -> Self {
        self.vm_id = vm_id.to_owned();
        self
    }

    /// Adds a property served for every request.
    #[must_use]
    pub fn property(mut self, name: &str, value: impl Into<Vec<u8>>) -> Self {
        self.properties.push((name.to_owned(), value.into()));
        self
    }

    /// Sets whose host behaviour to emulate.
    #[must_use]
    pub fn flavor(mut self, flavor: HostFlavor) -> Self {
        self.flavor = flavor;
        self
    }
}

/// One guest instance of a filter, configured and ready for requests.
///
/// A worker is `Send`, so a test can move each of several workers to its
/// own thread; [`start_workers`] starts them.
pub struct Worker {
    guest: Guest,
    spec: GuestSpec,
    root: ContextId,
    filter: String,
    options: WorkerOptions,
    restarts: u64,
}

impl fmt::Debug for Worker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field("filter", &self.filter)
            .field("guest", &self.guest)
            .field("restarts", &self.restarts)
            .finish_non_exhaustive()
    }
}

/// A stream context of one worker and the state lent to it between
/// callbacks.
pub(crate) struct OpenStream {
    pub(crate) context: ContextId,
    pub(crate) stream: HttpStream,
}

impl Worker {
    /// Builds a guest of `module`, runs `proxy_on_vm_start` and runs
    /// `proxy_on_configure` with `options.config`.
    ///
    /// # Errors
    ///
    /// Returns [`Error::ConfigRejected`] with the lines the filter logged
    /// when it rejects its configuration, [`Error::VmStartRejected`] when it
    /// rejects its start, and [`Error::Guest`] when the module is not a
    /// proxy-wasm guest or a start callback fails.
    pub fn start(module: &FilterModule, mut options: WorkerOptions) -> Result<Self, Error> {
        if options.plugin_name.is_empty() {
            options.plugin_name.clone_from(&module.name);
        }
        if options.vm_id.is_empty() {
            options.vm_id.clone_from(&options.plugin_name);
        }
        let filter = options.plugin_name.clone();
        let log: Arc<dyn LogSink> = options.logs.clone();
        let shared: Arc<dyn SharedServices> = options.store.clone();
        let services = VmServices::new(log)
            .with_clock(Arc::clone(&options.clock))
            .with_shared(shared)
            .with_vm_id(options.vm_id.as_bytes());
        let guest_error = |source| Error::Guest {
            filter: filter.clone(),
            source,
            log_lines: Vec::new(),
        };
        let limits = Limits::default().with_cpu_time(GUEST_CALL_TIME_LIMIT);
        let spec =
            GuestSpec::new(&module.host, &module.module, services, &limits).map_err(guest_error)?;
        let (guest, root) = Self::start_guest(&spec, &options)?;
        Ok(Self {
            guest,
            spec,
            root,
            filter,
            options,
            restarts: 0,
        })
    }

    fn start_guest(spec: &GuestSpec, options: &WorkerOptions) -> Result<(Guest, ContextId), Error> {
        let filter = options.plugin_name.clone();
        let mark = options.logs.mark();
        let mut guest = spec.build().map_err(|source| Error::Guest {
            filter: filter.clone(),
            source,
            log_lines: Vec::new(),
        })?;
        let plugin = PluginConfig::new()
            .with_name(options.plugin_name.as_bytes())
            .with_configuration(options.config.clone());
        let started = guest.start(plugin);
        let log_lines = options.logs.lines_of_since(guest.id(), mark);
        match started {
            Ok(Started::Serving(root)) => Ok((guest, root)),
            Ok(Started::Refused {
                callback: Callback::VmStart,
                ..
            }) => Err(Error::VmStartRejected { filter, log_lines }),
            Ok(Started::Refused { .. }) => Err(Error::ConfigRejected { filter, log_lines }),
            Err(source) => Err(Error::Guest {
                filter,
                source,
                log_lines,
            }),
        }
    }

    /// Runs one request through the filter and returns what the client
    /// receives.
    ///
    /// The steps follow Kong's engine. First come `on_request_headers` and
    /// `on_request_body` for each body chunk, then `upstream` unless the
    /// filter sent a local response. Then `on_response_headers` runs on the
    /// upstream's or the local response, followed by `on_response_body` for
    /// each chunk, and `on_done`, `on_log` and `on_delete`.
    /// A worker whose guest failed in an earlier request is rebuilt and
    /// configured again first, as Kong replaces a trapped instance.
    ///
    /// # Errors
    ///
    /// Returns [`Error::Guest`] when a callback fails, such as a panic in the
    /// filter, and [`Error::Stalled`] when the filter pauses a stream it
    /// never resumes.
    pub fn run(
        &mut self,
        request: Request,
        upstream: &mut dyn FnMut(&UpstreamRequest) -> UpstreamResponse,
    ) -> Result<Exchange, Error> {
        exchange::run_chain(std::slice::from_mut(self), request, upstream)
    }

    /// Whether the guest failed and must be rebuilt; [`Worker::run`] rebuilds
    /// it.
    pub fn is_poisoned(&self) -> bool {
        self.guest.is_poisoned()
    }

    /// Replaces the guest with a new one, configured again.
    ///
    /// # Errors
    ///
    /// The errors of [`Worker::start`].
    pub fn restart(&mut self) -> Result<(), Error> {
        let (guest, root) = Self::start_guest(&self.spec, &self.options)?;
        self.guest = guest;
        self.root = root;
        self.restarts += 1;
        Ok(())
    }

    /// Returns how many times the guest was rebuilt.
    pub fn restarts(&self) -> u64 {
        self.restarts
    }

    /// Returns the filter's name, the plugin name the guest reads.
    pub fn filter_name(&self) -> &str {
        &self.filter
    }

    /// Returns the options the worker started with.
    pub fn options(&self) -> &WorkerOptions {
        &self.options
    }

    /// Returns the shared store.
    pub fn store(&self) -> &Arc<SharedStore> {
        &self.options.store
    }

    /// Returns the log capture.
    pub fn logs(&self) -> &Arc<LogCapture> {
        &self.options.logs
    }

    /// Creates a stream context for `stream`.
    pub(crate) fn open(&mut self, stream: HttpStream) -> Result<OpenStream, Error> {
        let root = self.root;
        let mark = self.options.logs.mark();
        let (answer, stream) = self.guest.with(stream, |scope| {
            let context = scope.on_context_create(Some(root))?;
            scope.expect_stream_kind(context, StreamKind::Http)?;
            Ok::<_, GuestError>(context)
        });
        let context = answer.map_err(|source| self.guest_error(source, mark))?;
        Ok(OpenStream { context, stream })
    }

    /// Runs one stream callback on `open` and returns its action.
    pub(crate) fn callback<F>(
        &mut self,
        open: &mut OpenStream,
        callback: F,
    ) -> Result<Action, Error>
    where
        F: FnOnce(&mut CallScope<'_, HttpStream>, ContextId) -> Result<Action, GuestError>,
    {
        let context = open.context;
        let mut stream = std::mem::take(&mut open.stream);
        stream.resumed = false;
        let mark = self.options.logs.mark();
        let (answer, stream) = self.guest.with(stream, |scope| callback(scope, context));
        open.stream = stream;
        answer.map_err(|source| self.guest_error(source, mark))
    }

    /// Runs `on_done`, `on_log` and `on_delete` on `open`.
    ///
    /// A guest that returns false from `on_done` keeps its context, because
    /// it would finish it with `proxy_done`, which Kong's engine does not
    /// support.
    pub(crate) fn close(&mut self, open: OpenStream) -> Result<(), Error> {
        let context = open.context;
        let mark = self.options.logs.mark();
        let (answer, _) = self.guest.with(open.stream, |scope| {
            if scope.on_done(context)? {
                scope.on_log(context)?;
                scope.on_delete(context)?;
            }
            Ok::<_, GuestError>(())
        });
        answer.map_err(|source| self.guest_error(source, mark))
    }

    fn guest_error(&self, source: GuestError, mark: u64) -> Error {
        Error::Guest {
            filter: self.filter.clone(),
            source,
            log_lines: self.options.logs.lines_of_since(self.guest.id(), mark),
        }
    }
}

/// Starts `count` workers of `module` that share the store, the clock and
/// the logs of `options`, like the workers of one Kong node.
///
/// # Examples
///
/// ```no_run
/// use local_gateway::{filter_wasm_path, start_workers, FilterModule, Request, UpstreamResponse, WorkerOptions};
///
/// # fn main() -> Result<(), local_gateway::Error> {
/// let module = FilterModule::load_cached(filter_wasm_path())?;
/// let workers = start_workers(&module, &WorkerOptions::new(r#"{"limit": 10}"#), 4)?;
/// let threads: Vec<_> = workers
///     .into_iter()
///     .map(|mut worker| {
///         std::thread::spawn(move || worker.run(Request::get("/"), &mut |_| UpstreamResponse::ok()))
///     })
///     .collect();
/// for thread in threads {
///     let _ = thread.join();
/// }
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// The errors of [`Worker::start`].
pub fn start_workers(
    module: &FilterModule,
    options: &WorkerOptions,
    count: usize,
) -> Result<Vec<Worker>, Error> {
    (0..count)
        .map(|_| Worker::start(module, options.clone()))
        .collect()
}

/// Runs one request through a chain of filters, in the order Kong runs a
/// filter chain, and returns what the client receives.
///
/// Every filter's `on_request_headers` runs in chain order, then every
/// filter's body callbacks, then the upstream, then the response phase.
/// A filter that sends a local response stops the request phase, so the
/// filters after it get no request callbacks. With [`HostFlavor::Kong`] they
/// still get the local response in their response phase. The flavor of the
/// first worker applies to the whole chain. An empty chain calls the
/// upstream directly.
///
/// # Errors
///
/// The errors of [`Worker::run`].
pub fn run_chain(
    workers: &mut [Worker],
    request: Request,
    upstream: &mut dyn FnMut(&UpstreamRequest) -> UpstreamResponse,
) -> Result<Exchange, Error> {
    exchange::run_chain(workers, request, upstream)
}

#[cfg(test)]
mod tests;
