package grip

import "time"

// jsonInstruct applies an application/grip-instruct body on top of the
// header-based instructions (grip-reference §3.5): the JSON hold replaces
// Grip-Hold, JSON channels are appended, timeout and keep-alive override,
// meta merges, and the client response is rebuilt from `response` alone.
type jsonInstruct struct {
	in        *Instruct
	timeout   *int
	kaTimeout *int
	kaData    *[]byte
}

func (j jsonInstruct) parse(code int, body []byte) error {
	in := j.in
	in.JSON = true
	if code != 200 { // the backend's code, before Grip-Status
		return formatErr("response code for application/grip-instruct content must be 200")
	}
	v, err := decodeJSON(body)
	if err != nil {
		return formatErr("failed to parse application/grip-instruct content as JSON")
	}
	root, ok := asObj(v)
	if !ok {
		return formatErr("instruct must be an object")
	}

	if hv, ok := root.get("hold"); ok {
		hold, ok := asObj(hv)
		if !ok {
			return formatErr("instruct contains 'hold' with wrong type")
		}
		if err := j.parseHold(hold); err != nil {
			return err
		}
	}

	in.Response.Headers = nil
	in.Response.Body = nil
	if rv, ok := root.get("response"); ok {
		resp, ok := asObj(rv)
		if !ok {
			// Pushpin fails here without setting a message.
			return formatErr("")
		}
		if err := j.parseResponse(resp); err != nil {
			return err
		}
	}
	return nil
}

func (j jsonInstruct) parseHold(hold obj) error {
	const pn = "hold"
	in := j.in
	mode, ok, err := hold.str(pn, "mode", false)
	if err != nil {
		return err
	}
	switch {
	case !ok || mode == "response":
		in.Hold = HoldResponse
	case mode == "stream":
		in.Hold = HoldStream
	default:
		return formatErr("hold 'mode' must be set to either 'response' or 'stream'")
	}

	chans, _, err := hold.list(pn, "channels", true)
	if err != nil {
		return err
	}
	for _, cv := range chans {
		const cpn = "channel"
		co, ok := asObj(cv)
		if !ok {
			return errNotObject(cpn)
		}
		var c Channel
		if c.BackendName, _, err = co.str(cpn, "name", true); err != nil {
			return err
		}
		if c.PrevID, _, err = co.str(cpn, "prev-id", false); err != nil {
			return err
		}
		fl, _, err := co.list(cpn, "filters", false)
		if err != nil {
			return err
		}
		if len(fl) > 0 {
			if c.Filters, err = stringList(fl, "filters contains value with wrong type"); err != nil {
				return err
			}
		}
		in.Channels = append(in.Channels, c)
	}

	if n, ok, err := hold.integer(pn, "timeout"); err != nil {
		return err
	} else if ok {
		if n < 0 {
			return errInvalid(pn, "timeout")
		}
		*j.timeout = n
	}

	ka, ok, err := hold.object(pn, "keep-alive", false)
	if err != nil {
		return err
	}
	if ok {
		const kpn = "keep-alive"
		if _, has := ka.get("content-bin"); has {
			s, _, err := ka.str(kpn, "content-bin", false)
			if err != nil {
				return err
			}
			*j.kaData = decodeBase64Lenient(s)
		} else if cv, has := ka.get("content"); has {
			b, ok := toBytes(cv)
			if !ok {
				return errWrongType(kpn, "content")
			}
			*j.kaData = b
		}
		if n, ok, err := ka.integer(kpn, "timeout"); err != nil {
			return err
		} else if ok {
			if n < 0 {
				return errInvalid(kpn, "timeout")
			}
			*j.kaTimeout = n
		} else {
			*j.kaTimeout = int(DefaultKeepAliveTimeout / time.Second)
		}
	}

	meta, ok, err := hold.object(pn, "meta", false)
	if err != nil {
		return err
	}
	if ok {
		if err := stringMap(meta, in.Meta); err != nil {
			return err
		}
	}
	return nil
}

func (j jsonInstruct) parseResponse(resp obj) error {
	const pn = "response"
	r := &j.in.Response
	if n, ok, err := resp.integer(pn, "code"); err != nil {
		return err
	} else if ok {
		if n < 0 || n > 999 {
			return errInvalid(pn, "code")
		}
		r.Code = n
		r.Reason = "" // a JSON code gets its own default reason
	}
	reason, _, err := resp.str(pn, "reason", false)
	if err != nil {
		return err
	}
	if reason != "" {
		r.Reason = reason
	}
	if hv, ok := resp.get("headers"); ok {
		hs, err := headerList(hv, pn)
		if err != nil {
			return err
		}
		r.Headers = hs
	}
	if _, ok := resp.get("body-bin"); ok {
		s, _, err := resp.str(pn, "body-bin", false)
		if err != nil {
			return err
		}
		r.Body = decodeBase64Lenient(s)
	} else if bv, ok := resp.get("body"); ok {
		b, ok := toBytes(bv)
		if !ok {
			return errWrongType(pn, "body")
		}
		r.Body = b
	}
	return nil
}
