namespace DistTrain.Core.Data;

/// <summary>How a data set is stored (<c>Data:Format</c>).</summary>
public enum DataFormat
{
    /// <summary>The four IDX files of MNIST and Fashion-MNIST in <c>Data:Directory</c>; pixels divided by 255.</summary>
    Idx,
    /// <summary>CSV files with numeric features and a label column (<c>Data:Csv</c>); values used as they are.</summary>
    Csv,
    /// <summary>Class sub-folders of PNG and JPEG images (<c>Data:ImageFolder</c>); pixels divided by 255.</summary>
    ImageFolder,
}
