using System.Collections.Concurrent;
using System.Reflection;
using MessagePack;

namespace DistTrain.Cluster.Serialization;

/// <summary>
/// What a decoded message of one type must have, beyond what MessagePack checks: at least as many fields as its
/// constructor requires (MessagePack fills missing trailing fields with defaults, so an empty array would decode as a
/// message of zeros and nulls), and no null in a member (or array element) its type declares non-nullable.
/// </summary>
internal sealed class MessageShape
{
    private static readonly ConcurrentDictionary<Type, MessageShape> Shapes = new();

    private readonly (string Name, Func<object, object?> Get, bool CheckElements)[] _nonNullable;

    private MessageShape(Type type)
    {
        var constructor = type.GetConstructors().FirstOrDefault(c => c.IsDefined(typeof(SerializationConstructorAttribute)))
                          ?? type.GetConstructors().OrderByDescending(c => c.GetParameters().Length).FirstOrDefault();
        RequiredFields = constructor?.GetParameters().Count(p => !p.HasDefaultValue) ?? 0;
        var nullability = new NullabilityInfoContext();
        _nonNullable = [.. type.GetProperties(BindingFlags.Public | BindingFlags.Instance)
            .Where(p => p.IsDefined(typeof(KeyAttribute)) && !p.PropertyType.IsValueType)
            .Select(p => (Property: p, Info: nullability.Create(p)))
            .Where(p => p.Info.ReadState == NullabilityState.NotNull)
            .Select(p => (p.Property.Name, (Func<object, object?>)p.Property.GetValue,
                p.Property.PropertyType.GetElementType() is { IsValueType: false } && p.Info.ElementType?.ReadState == NullabilityState.NotNull))];
    }

    /// <summary>The shape of <paramref name="type"/>, computed once.</summary>
    public static MessageShape Of(Type type) => Shapes.GetOrAdd(type, t => new MessageShape(t));

    /// <summary>Fields (array elements) the message's constructor requires: the parameters without a default value.</summary>
    public int RequiredFields { get; }

    /// <summary>The first member that is null although its type does not allow it (<c>Workers[1]</c> for an array element), or null.</summary>
    public string? NullMember(object message)
    {
        foreach (var (name, get, checkElements) in _nonNullable)
        {
            var value = get(message);
            if (value is null) return name;
            if (checkElements && value is object?[] array)
                for (var i = 0; i < array.Length; i++)
                    if (array[i] is null) return $"{name}[{i}]";
        }
        return null;
    }
}
