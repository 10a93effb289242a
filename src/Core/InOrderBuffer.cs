using System;
using System.Collections.Generic;

namespace AsyncGroup.Core;

/// <summary>
/// Releases items in index order as soon as order allows: item k is released the moment
/// items 0..k-1 have been released, whatever order they were put in. Single-threaded by design:
/// the cmdlets use it on the pipeline thread only.
/// </summary>
public sealed class InOrderBuffer<T>
{
    private readonly Dictionary<int, T> _waiting = new();

    /// <summary>The index that will be released next.</summary>
    public int NextIndex { get; private set; }

    /// <summary>How many items are held back waiting for an earlier one.</summary>
    public int Held => _waiting.Count;

    /// <summary>Stores the item at <paramref name="index"/>; each index once.</summary>
    public void Put(int index, T item)
    {
        if (index < NextIndex || _waiting.ContainsKey(index))
        {
            throw new ArgumentException($"Index {index} was already put.", nameof(index));
        }

        _waiting.Add(index, item);
    }

    /// <summary>Takes the next item in order when it is there.</summary>
    public bool TryTake(out T item)
    {
        if (_waiting.TryGetValue(NextIndex, out item!))
        {
            _waiting.Remove(NextIndex);
            NextIndex++;
            return true;
        }

        return false;
    }
}
