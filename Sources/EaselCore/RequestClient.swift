/// Who a request came from, for the per-client queue share: the API key's id, or the
/// client's address when no keys are set. The HTTP layer binds it around each request;
/// the scheduler reads it when jobs are submitted.
public enum RequestClient {
    @TaskLocal public static var id: String?
}
