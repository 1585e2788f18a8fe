package grip

// LastID is one channel of a Grip-Last request header.
type LastID struct {
	Channel, ID string
}

// RequestLastIDs lists the channels and last-ids of a request's Grip-Last
// headers in order (`Grip-Last: <channel>; last-id=<id>`, comma lists
// allowed), as Pushpin's getAllAsParameters reads them; a part with broken
// quoting is skipped and a missing last-id is empty.
func RequestLastIDs(hs []Header) []LastID {
	var out []LastID
	for _, ps := range headerGetAllParams(hs, "Grip-Last", false) {
		id, _ := ps.get("last-id")
		out = append(out, LastID{Channel: ps[0].name, ID: id})
	}
	return out
}
