//! The DPDK Environment Abstraction Layer: initialised once per process, cleaned up when the last
//! handle (held by every mempool, port and lcore job) is dropped.

use std::ffi::{CString, c_char, c_int, c_void};
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use dpdk_sys as sys;

use super::RteError;

/// Set by the first `Eal::init`: DPDK cannot be initialised twice in one process.
static INITIALISED: AtomicBool = AtomicBool::new(false);

/// Why EAL could not start.
#[derive(Debug, thiserror::Error)]
pub enum EalError {
    /// A second `Eal::init` in the same process.
    #[error("DPDK EAL is already initialised in this process")]
    AlreadyInitialised,
    /// An argument contained a NUL byte.
    #[error("EAL argument {0:?} contains a NUL byte")]
    BadArgument(String),
    /// `rte_eal_init` failed; DPDK has logged the details above this line.
    #[error("rte_eal_init failed: {0} (DPDK's log above says why; check hugepages and --lcores)")]
    Init(RteError),
    /// Jobs can be launched (and waited for) only from the main lcore.
    #[error("lcore jobs must be launched from the main lcore's thread")]
    NotMainLcore,
    /// `rte_eal_remote_launch` refused the job.
    #[error("cannot launch a job on lcore {lcore}: {source}")]
    Launch {
        /// The lcore asked for.
        lcore: u32,
        /// DPDK's reason.
        source: RteError,
    },
}

/// A handle on the initialised EAL. Cloning is cheap; EAL is cleaned up when the last clone goes.
#[derive(Clone)]
pub struct Eal {
    inner: Arc<EalInner>,
}

struct EalInner {
    main_lcore: u32,
    // rte_eal_init may keep pointers into argv; keep the strings alive as long as EAL.
    _argv: Vec<CString>,
}

impl Eal {
    /// Initialises EAL with `args` (without the program name). Only the first call in a process can
    /// succeed. The calling thread becomes the main lcore and is pinned to its CPU by DPDK.
    pub fn init<S: AsRef<str>>(args: &[S]) -> Result<Self, EalError> {
        if INITIALISED.swap(true, Ordering::SeqCst) {
            return Err(EalError::AlreadyInitialised);
        }
        let mut argv = vec![CString::new("ferrovs").expect("no NUL")];
        for arg in args {
            let arg = arg.as_ref();
            argv.push(CString::new(arg).map_err(|_| EalError::BadArgument(arg.to_string()))?);
        }
        let mut ptrs: Vec<*mut c_char> = argv.iter().map(|s| s.as_ptr().cast_mut()).collect();
        let argc = c_int::try_from(ptrs.len()).expect("few arguments");
        // SAFETY: argc/argv describe NUL-terminated strings that outlive EAL (kept in `_argv`);
        // EAL permutes the pointer array, never the bytes; INITIALISED guarantees a single call.
        let ret = unsafe { sys::rte_eal_init(argc, ptrs.as_mut_ptr()) };
        if ret < 0 {
            return Err(EalError::Init(RteError::last()));
        }
        // SAFETY: EAL is initialised; this reads its configuration.
        let main_lcore = unsafe { sys::rte_get_main_lcore() };
        Ok(Self { inner: Arc::new(EalInner { main_lcore, _argv: argv }) })
    }

    /// The lcore id of the thread that called `init`.
    pub fn main_lcore(&self) -> u32 {
        self.inner.main_lcore
    }

    /// The worker lcores EAL was given (every enabled lcore except the main one), ascending.
    pub fn worker_lcores(&self) -> Vec<u32> {
        let mut out = Vec::new();
        // SAFETY: EAL is initialised; rte_get_next_lcore walks its static lcore table.
        let mut lcore = unsafe { sys::rte_get_next_lcore(u32::MAX, 1, 0) };
        while lcore < sys::RTE_MAX_LCORE {
            out.push(lcore);
            // SAFETY: as above.
            lcore = unsafe { sys::rte_get_next_lcore(lcore, 1, 0) };
        }
        out
    }

    /// Runs `job` on worker `lcore` (an EAL thread pinned to its CPU, with its own mempool cache).
    /// A panic in `job` is caught and returned by [`LcoreJob::join`].
    pub fn launch<T, F>(&self, lcore: u32, job: F) -> Result<LcoreJob<T>, EalError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        // SAFETY: reads a thread-local; no preconditions.
        if unsafe { sys::ferrovs_lcore_id() } != self.inner.main_lcore {
            return Err(EalError::NotMainLcore);
        }
        let slot: Arc<Mutex<Option<std::thread::Result<T>>>> = Arc::new(Mutex::new(None));
        let result = Arc::clone(&slot);
        let boxed: Box<dyn FnOnce() + Send> = Box::new(move || {
            let outcome = catch_unwind(AssertUnwindSafe(job));
            *result.lock().unwrap_or_else(|e| e.into_inner()) = Some(outcome);
        });
        let arg = Box::into_raw(Box::new(boxed)).cast::<c_void>();
        // SAFETY: `arg` is a leaked Box<Box<dyn FnOnce>> that `run_job` takes back exactly once;
        // the job is 'static and Send, so running it on another thread is sound.
        let ret = unsafe { sys::rte_eal_remote_launch(Some(run_job), arg, lcore) };
        if ret < 0 {
            // SAFETY: the launch failed, so run_job never saw `arg`; reclaim it here, once.
            drop(unsafe { Box::from_raw(arg.cast::<Box<dyn FnOnce() + Send>>()) });
            return Err(EalError::Launch { lcore, source: RteError::from_ret(ret) });
        }
        Ok(LcoreJob { lcore, slot, joined: false, _eal: self.clone(), _main_thread_only: PhantomData })
    }
}

/// The trampoline EAL calls on the worker lcore.
extern "C" fn run_job(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` came from Box::into_raw in `Eal::launch` and is passed to us exactly once.
    let job = unsafe { Box::from_raw(arg.cast::<Box<dyn FnOnce() + Send>>()) };
    // The job itself catches panics; this guards the unwinding of the Box's drop.
    match catch_unwind(AssertUnwindSafe(job)) {
        Ok(()) => 0,
        Err(_) => -1,
    }
}

impl Drop for EalInner {
    fn drop(&mut self) {
        // SAFETY: this is the last handle: every mempool, port and lcore job holding an `Eal` is gone.
        let ret = unsafe { sys::rte_eal_cleanup() };
        if ret < 0 {
            log::warn!("rte_eal_cleanup failed: {}", RteError::from_ret(ret));
        }
    }
}

/// A job running on a worker lcore. Dropping it waits for the job to finish. It stays on the main
/// lcore's thread (`!Send`): DPDK allows waiting for an lcore only there.
pub struct LcoreJob<T> {
    lcore: u32,
    slot: Arc<Mutex<Option<std::thread::Result<T>>>>,
    joined: bool,
    _eal: Eal,
    _main_thread_only: PhantomData<*const ()>,
}

/// The job panicked; the payload's message, when it had one.
#[derive(Debug, thiserror::Error)]
#[error("the job on lcore {lcore} panicked: {message}")]
pub struct LcorePanic {
    /// Where it ran.
    pub lcore: u32,
    /// The panic message.
    pub message: String,
}

impl<T> LcoreJob<T> {
    /// The lcore the job runs on.
    pub fn lcore(&self) -> u32 {
        self.lcore
    }

    /// Waits for the job and returns its result.
    pub fn join(mut self) -> Result<T, LcorePanic> {
        self.wait();
        let outcome = self.slot.lock().unwrap_or_else(|e| e.into_inner()).take();
        match outcome {
            Some(Ok(value)) => Ok(value),
            Some(Err(payload)) => {
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "(no message)".to_string());
                Err(LcorePanic { lcore: self.lcore, message })
            }
            None => Err(LcorePanic { lcore: self.lcore, message: "job did not run".into() }),
        }
    }

    fn wait(&mut self) {
        if !self.joined {
            // SAFETY: called from the main lcore (the only thread that launches jobs) for an lcore we
            // launched on; it blocks until that lcore's job returns.
            unsafe { sys::rte_eal_wait_lcore(self.lcore) };
            self.joined = true;
        }
    }
}

impl<T> Drop for LcoreJob<T> {
    fn drop(&mut self) {
        self.wait();
    }
}
