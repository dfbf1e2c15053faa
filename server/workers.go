package server

// maxIdleWorkers bounds the handler goroutines kept waiting for work. A
// burst that needs more starts goroutines that end when they are done.
const maxIdleWorkers = 64

// workerPool runs the handling of client frames on goroutines that outlive
// one request, shared by every connection. A reader goroutine hands each
// batch of frames to a worker and waits for it. The reader, idle most of
// its life, so never grows the deep stack that request handling needs for
// JSON decoding, the protocols and the backplane. A goroutine keeps the
// largest stack it ever grew until a garbage collection shrinks it.
// Reusing workers saves the start of a goroutine and the growth of its
// stack on every batch, as BenchmarkHandleOnPooledWorker shows.
type workerPool struct {
	idle chan *worker
}

type worker struct {
	task chan func()
	done chan struct{}
}

func newWorkerPool() *workerPool {
	return &workerPool{idle: make(chan *worker, maxIdleWorkers)}
}

// run calls fn on a worker and returns when fn returned.
func (p *workerPool) run(fn func()) {
	var w *worker
	select {
	case w = <-p.idle:
	default:
		w = &worker{task: make(chan func()), done: make(chan struct{})}
		go w.loop(p)
	}
	w.task <- fn
	<-w.done
}

// loop serves tasks until the pool has no room for the idle worker.
func (w *worker) loop(p *workerPool) {
	for fn := range w.task {
		fn()
		// The worker is idle again before the caller resumes, so a
		// reader's next message usually finds it.
		select {
		case p.idle <- w:
			w.done <- struct{}{}
		default:
			w.done <- struct{}{}
			return
		}
	}
}
