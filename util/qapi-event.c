/*
 * Where generated event emitters deliver their events (see
 * include/qapi/qapi-runtime.h).  A registered sink rather than a symbol
 * each program must define, so programs that link the block layer but
 * have no monitor (the tools) need nothing.
 */
#include "qapi/qapi-runtime.h"

/* Main thread only, like every event. */
static QapiEventSink *event_sink;

void qapi_event_set_sink(QapiEventSink *sink)
{
    event_sink = sink;
}

void qapi_event_emit(const char *event, const char *data_json)
{
    if (event_sink) {
        event_sink(event, data_json);
    }
}
