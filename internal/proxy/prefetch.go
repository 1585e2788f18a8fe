package proxy

import (
	"time"

	"tack/pkg/zhttp"
)

// Request body read ahead of proxying, as pushpin-proxy 1.36's
// RequestSession does: up to inspectPrefetch bytes before the inspect call
// (its body), and, when the answer names a sharing key, up to
// RequestBodyKeep bytes before deciding whether the request can share
// (only a request whose whole body is in can). connmgr is granted the
// credits for it; the body is kept and goes to the backend as usual.

// prefetchStage says what a session reading ahead will do next.
type prefetchStage uint8

const (
	prefetchNone    prefetchStage = iota
	prefetchInspect               // then the inspect call
	prefetchShare                 // then shareOrStart with s.shareKey
)

// readAhead lets connmgr send s's body up to limit bytes and reports
// whether s must wait for it (false: the body is complete, overflowed or
// already as long as limit).
func (e *engine) readAhead(s *session, limit int, stage prefetchStage, now time.Time) bool {
	if !s.reqMore || s.bodyOverflow || len(s.body) >= limit {
		return false
	}
	s.prefetch, s.prefetchLimit = stage, limit
	if want := int64(limit-len(s.body)) - s.inOutstanding; want > 0 {
		c := zhttp.New()
		c.Type = zhttp.TypeCredit
		c.Credits = want
		s.inOutstanding += want
		e.sendIn(s, c, now)
	}
	return true
}

// prefetchBody takes body read ahead; once there is enough, the session
// goes on to its next stage.
func (e *engine) prefetchBody(s *session, b []byte, now time.Time) {
	e.statsCount(s, ctrClientContentRecv, len(b))
	e.keepBody(s, b)
	s.pendingOut = append(s.pendingOut, b...)
	if s.reqMore && !s.bodyOverflow && len(s.body) < s.prefetchLimit {
		return
	}
	stage := s.prefetch
	s.prefetch = prefetchNone
	switch stage {
	case prefetchInspect:
		e.inspectNow(s, now)
	case prefetchShare:
		e.shareOrStart(s, s.shareKey, now)
	}
}
