package routes

import "strconv"

// Diag is one problem found while parsing a routes file. The line it names
// was skipped; the rest of the file still loads.
type Diag struct {
	Source string // file name, or "--route" for command-line routes
	Line   int    // 1-based
	Msg    string // Pushpin's message, verbatim
}

// String formats d the way Pushpin logs it: "<file>:<line>: <message>".
func (d Diag) String() string {
	return d.Source + ":" + strconv.Itoa(d.Line) + ": " + d.Msg
}

// Messages used in Diag.Msg, spelled as Pushpin logs them.
const (
	msgUnterminatedQuote  = "unterminated quoted section"
	msgUnterminatedEscape = "unterminated escape sequence"
	msgUnexpectedEscape   = "unexpected escape character: " // followed by the character
	msgExpectingProp      = "expecting prop"
	msgEmptyPropName      = "empty prop name"
	msgNeedTarget         = "must specify condition and at least one target"
	msgNoDomainOrID       = "condition has no domain or id"
	msgBadProto           = "proto must be set to 'http' or 'ws'"
	msgBadSSL             = "ssl must be set to 'yes' or 'no'"
	msgEmptyPathBeg       = "path_beg cannot be empty"
	msgBadJSONPMode       = "jsonp_mode must be set to 'basic' or 'extended'"
	msgBadHeader          = "header must use format 'name:value'"
	msgDuplicate          = "skipping duplicate condition"
	msgTargetBadFormat    = "target bad format"
	msgTargetInvalidPort  = "target invalid port"
)
