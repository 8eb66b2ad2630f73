//go:build linux

package netmon

import (
	"errors"
	"fmt"
	"math"
	"os"

	"golang.org/x/sys/unix"
)

// clockWatch tells when the kernel reports the wall clock set: a
// CLOCK_REALTIME timerfd armed at the end of time with
// TFD_TIMER_CANCEL_ON_SET is cancelled (its read fails with ECANCELED) when
// the clock is set and when the machine resumes from suspend, which the
// kernel treats as a clock set. The read waits in the runtime's poller: no
// thread, no timer, nothing wakes up until the kernel says so.
type clockWatch struct {
	f    *os.File
	done chan struct{}
}

// watchClock starts the watcher; set is called (from its goroutine) at
// every clock set. Stop ends it.
func watchClock(set func()) (*clockWatch, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_REALTIME, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("timerfd: %w", err)
	}
	if err := armClockFD(fd); err != nil {
		unix.Close(fd)
		return nil, err
	}
	w := &clockWatch{f: os.NewFile(uintptr(fd), "clock-set"), done: make(chan struct{})}
	go w.run(set)
	return w, nil
}

// armClockFD arms fd at the far end of the realtime clock, cancelled on a
// clock set.
func armClockFD(fd int) error {
	never := unix.ItimerSpec{Value: unix.Timespec{Sec: math.MaxInt64 / 2}}
	if err := unix.TimerfdSettime(fd, unix.TFD_TIMER_ABSTIME|unix.TFD_TIMER_CANCEL_ON_SET, &never, nil); err != nil {
		return fmt.Errorf("timerfd arm: %w", err)
	}
	return nil
}

func (w *clockWatch) run(set func()) {
	defer close(w.done)
	var buf [8]byte
	for {
		_, err := w.f.Read(buf[:])
		if !errors.Is(err, unix.ECANCELED) {
			return // closed by Stop (the timer itself never expires)
		}
		sc, err := w.f.SyscallConn()
		if err != nil {
			return
		}
		var armErr error
		if err := sc.Control(func(fd uintptr) { armErr = armClockFD(int(fd)) }); err != nil || armErr != nil {
			return
		}
		set()
	}
}

// Stop closes the timerfd and waits for the watcher to end.
func (w *clockWatch) Stop() {
	_ = w.f.Close()
	<-w.done
}
