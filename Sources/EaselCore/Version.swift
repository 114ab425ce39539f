public enum EaselVersion {
    public static let current = "0.1.0"
}
